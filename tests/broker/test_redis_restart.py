"""A Redis server of the test's own, killed and restarted under a running reserve loop; and
credentials that Redis refuses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import anyio
import pytest

from taskit.broker.redis import RedisBroker
from taskit.errors import BrokerConnectionError
from taskit.job import Job, Lease, Outcome, OutcomeKind, encode_arguments
from tests.broker._redis_kinds import OwnRedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_job(queue: str) -> Job:
    return Job(
        id=uuid.uuid4().hex,
        task="tests.noop",
        queue=queue,
        payload=encode_arguments((), {}),
        created_at=datetime.now(UTC),
    )


async def until_it_works(broker: RedisBroker, job: Job) -> list[Job]:
    """Enqueue ``job``, retrying while Redis is still coming back; fails after 10 s."""
    with anyio.fail_after(10):
        while True:
            try:
                return await broker.enqueue([job])
            except BrokerConnectionError:
                await anyio.sleep(0.05)


async def test_the_broker_reconnects_after_redis_restarts_under_a_reserve_loop() -> None:
    server = OwnRedisServer()
    broker = RedisBroker(server.url, prefix="restart")
    got: list[Lease] = []
    send, receive = anyio.create_memory_object_stream[Lease](10)
    outage = anyio.Event()
    try:
        server.start()

        async def reserve_loop() -> None:
            while True:  # a worker's fetch loop: back off on connection errors, never exit
                try:
                    leases = await broker.reserve(["q"], count=1, lease=30, timeout=0.5)
                except BrokerConnectionError:
                    outage.set()
                    await anyio.sleep(0.05)
                    continue
                for lease in leases:
                    done = Outcome(
                        job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE
                    )
                    await broker.settle([done])
                    await send.send(lease)

        async with anyio.create_task_group() as tg, send, receive:
            tg.start_soon(reserve_loop)
            [first] = await broker.enqueue([make_job("q")])
            with anyio.fail_after(5):
                got.append(await receive.receive())

            server.kill()
            # Unreachable, or (when the enqueue was written before the client saw the
            # connection die) outcome unknown: both are BrokerConnectionError.
            either = r"cannot be reached|outcome is unknown"
            with pytest.raises(BrokerConnectionError, match=either):
                await broker.enqueue([make_job("q")])
            with pytest.raises(BrokerConnectionError):
                await broker.get(first.id)
            with anyio.fail_after(5):
                await outage.wait()  # the loop sees the outage too, and survives it

            server.start()  # empty: no persistence, no scripts loaded
            [second] = await until_it_works(broker, make_job("q"))
            with anyio.fail_after(5):
                got.append(await receive.receive())
            tg.cancel_scope.cancel()

        assert [lease.job.id for lease in got] == [first.id, second.id]
        done = await broker.get(second.id)
        assert done is not None
        assert done.status == "completed"
    finally:
        await broker.close()
        server.stop()


async def test_bad_credentials_fail_fast_without_showing_the_password() -> None:
    server = OwnRedisServer("--requirepass", "right-pw")
    try:
        server.start()
        wrong = RedisBroker(f"redis://:wrong-pw@127.0.0.1:{server.port}/0", prefix="auth")
        none = RedisBroker(server.url, prefix="auth")
        right = RedisBroker(f"redis://:right-pw@127.0.0.1:{server.port}/0", prefix="auth")
        try:
            started = anyio.current_time()
            with pytest.raises(BrokerConnectionError) as caught:
                await wrong.get("x")
            assert anyio.current_time() - started < 1.0
            assert "wrong-pw" not in str(caught.value)
            assert ":***@" in str(caught.value)
            with pytest.raises(BrokerConnectionError):
                await none.get("x")
            assert await right.get("x") is None
        finally:
            for broker in (wrong, none, right):
                await broker.close()
    finally:
        server.stop()
