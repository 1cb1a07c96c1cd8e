"""The Redis broker's long blocking waits, which carry the reserve script right behind their
BLPOP (``taskit.broker.redis.wait``): a woken wait leases in the same round trip, a cut-short
one hands back whatever its script leased, and a lost script cache is survived. Real Redis only:
the pipelined path needs the broker's own RESP connections, which fakeredis does not provide."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
import redis.exceptions

from taskit.broker.redis import requests
from taskit.broker.redis._testing import count_plain_reserves, transports
from taskit.broker.redis.errors import ReplyLost
from taskit.broker.redis.scripts import SCRIPTS
from taskit.broker.redis.transport.fast import FastClient
from taskit.errors import BrokerOutcomeUnknownError
from taskit.job import Job, JobStatus, Lease, stored_form
from tests.broker._helpers import make_job, new_queue
from tests.broker._redis_kinds import OWN, RedisHarness, open_redis_harness

pytestmark = pytest.mark.anyio

LONG = 30.0
BLOCK = 10.0  # well above PIPELINE_FROM: these waits take the pipelined path
PROMPT = 3.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def rh(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    async with open_redis_harness("fast-real", request) as harness:
        yield harness


@pytest.fixture
async def own_rh(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    """A harness on a redis-server of the test's own: its blocked clients and its script
    cache are the test's alone."""
    async with open_redis_harness(OWN, request) as harness:
        yield harness


async def reserve_while(
    rh: RedisHarness, queue: str, then: Callable[[], Awaitable[Job]]
) -> tuple[list[Lease], Job]:
    """A long blocking reserve on ``queue``; once it waits, ``then()`` (which enqueues a job).
    The leases it got, and that job."""
    got: list[Lease] = []

    async def consume() -> None:
        got.extend(await rh.broker.reserve([queue], count=5, lease=LONG, timeout=BLOCK))

    with anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            job = await then()
    return got, job


async def enqueue_one(rh: RedisHarness, queue: str) -> Job:
    [job] = await rh.broker.enqueue([make_job(queue)])
    return job


async def test_a_woken_long_wait_leases_in_the_same_round_trip(rh: RedisHarness) -> None:
    queue = new_queue()
    with count_plain_reserves(rh.broker) as calls:
        got, job = await reserve_while(rh, queue, lambda: enqueue_one(rh, queue))

    assert [lease.job.id for lease in got] == [job.id]
    assert got[0].job.status is JobStatus.RUNNING
    assert calls == [1]  # the first, empty, reserve; the second rode behind the BLPOP
    fetched = await rh.broker.get(job.id)
    assert fetched is not None
    assert fetched.status is JobStatus.RUNNING


async def test_cancelling_a_long_wait_unblocks_it_and_keeps_the_connection(
    rh: RedisHarness,
) -> None:
    queue = new_queue()
    got: list[Lease] = []

    async def consume() -> None:
        got.extend(await rh.broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK))

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        waits = transports(rh.broker).waits
        assert isinstance(waits, FastClient)
        before = waits.client_id
        started = anyio.current_time()
        tg.cancel_scope.cancel()
    took = anyio.current_time() - started

    assert got == []
    assert took < 0.5  # CLIENT UNBLOCK ended the BLPOP: no wait for a dropped connection
    assert waits.client_id == before  # the same connection, not one made anew
    assert (await rh.broker.stats([queue]))[queue].running == 0
    got, job = await reserve_while(rh, queue, lambda: enqueue_one(rh, queue))  # it serves on
    assert [lease.job.id for lease in got] == [job.id]


async def test_a_cancel_racing_a_wake_up_never_leaves_a_job_leased_unseen(
    rh: RedisHarness,
) -> None:
    queue = new_queue()
    for i in range(25):
        got: list[Lease] = []

        async def consume(got: list[Lease] = got) -> None:
            got.extend(await rh.broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK))

        with anyio.fail_after(PROMPT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                [job] = await rh.broker.enqueue([make_job(queue)])
                if i % 2:  # cancel at once, or once the wake-up is under way
                    await anyio.sleep((i % 5) * 0.0002)
                tg.cancel_scope.cancel()
        fetched = await rh.broker.get(job.id)
        assert fetched is not None
        if fetched.status is JobStatus.RUNNING:
            assert [lease.job.id for lease in got] == [job.id]  # leased, and the caller has it
        else:
            assert fetched.status is JobStatus.PENDING
            assert got == []
        leftover = await rh.broker.reserve([queue], count=10, lease=LONG, timeout=0)
        assert all(lease.job.id == job.id for lease in leftover)
    # Every job ended up with the caller or back in reach; none was left leased unseen.
    stats = (await rh.broker.stats([queue]))[queue]
    assert stats.queued == 0
    assert stats.running == 25


async def test_a_lost_script_cache_behind_a_wait_is_reloaded(own_rh: RedisHarness) -> None:
    queue = new_queue()

    async def flush_then_enqueue() -> Job:
        await own_rh.client.script_flush()  # the EVALSHA behind the BLPOP now gets NOSCRIPT
        return await enqueue_one(own_rh, queue)

    got, job = await reserve_while(own_rh, queue, flush_then_enqueue)

    assert [lease.job.id for lease in got] == [job.id]


async def test_a_refused_unblock_drops_the_wait_at_once_and_loses_nothing(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = new_queue()
    main = transports(rh.broker).commands
    assert isinstance(main, FastClient)
    plain = main.execute

    async def no_unblock(*args: Any) -> Any:
        if args[:2] == ("CLIENT", "UNBLOCK"):  # as a user without the permission would see
            raise redis.exceptions.NoPermissionError("NOPERM this user has no permissions")
        return await plain(*args)

    monkeypatch.setattr(main, "execute", no_unblock)

    async def consume() -> None:
        assert await rh.broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK) == []

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        started = anyio.current_time()
        tg.cancel_scope.cancel()
    took = anyio.current_time() - started

    assert took < 0.5  # one short look for a reply in flight, then the connection is dropped
    got, job = await reserve_while(rh, queue, lambda: enqueue_one(rh, queue))
    assert [lease.job.id for lease in got] == [job.id]


async def test_a_wait_whose_connection_another_dropped_waits_on_and_gets_its_job(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two long waits share the loop's waits connection; the one queued behind is cancelled
    and, its unblock refused, drops the connection under the one in front: that one is not
    failed, it waits again and is woken by the next job."""
    queue = new_queue()
    pair = transports(rh.broker)
    main, waits = pair.commands, pair.waits
    assert isinstance(main, FastClient)
    assert isinstance(waits, FastClient)
    plain, send = main.execute, waits.send
    sent = [anyio.Event(), anyio.Event()]  # each wait's BLPOP written

    async def no_unblock(*args: Any) -> Any:
        if args[:2] == ("CLIENT", "UNBLOCK"):
            raise redis.exceptions.NoPermissionError("NOPERM this user has no permissions")
        return await plain(*args)

    async def noted(*commands: Any, wait: float = 0.0) -> Any:
        futures = await send(*commands, wait=wait)
        for event in sent:  # the first two (the front one waits again after the drop)
            if not event.is_set():
                event.set()
                break
        return futures

    monkeypatch.setattr(main, "execute", no_unblock)
    monkeypatch.setattr(waits, "send", noted)
    got: list[Lease] = []

    async def front() -> None:
        got.extend(await rh.broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK))

    async def behind() -> None:
        await rh.broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK)

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as outer:
            outer.start_soon(front)
            await sent[0].wait()
            async with anyio.create_task_group() as tg:
                tg.start_soon(behind)
                await sent[1].wait()
                tg.cancel_scope.cancel()  # cut short: no unblock, so the connection is dropped
            job = await enqueue_one(rh, queue)

    assert [lease.job.id for lease in got] == [job.id]


@pytest.mark.parametrize("seconds", [0.5, BLOCK], ids=["short-wait", "long-wait"])
async def test_a_wait_whose_connection_the_server_closed_raises_and_does_not_spin(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch, seconds: float
) -> None:
    """Only a drop by this process (another wait cut short) is a wake-up: a connection the
    server closes under every wait raises, or a reserve would loop on, reconnecting."""
    queue = new_queue()
    waits = transports(rh.broker).waits
    assert isinstance(waits, FastClient)
    tries = 0

    async def closed_by_server(*args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        raise ReplyLost("connection to Redis lost before the reply: closed")

    def closed_by_server_send(*args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lost.set_exception(ReplyLost("connection to Redis lost before the reply: closed"))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_exception(ReplyLost("connection to Redis lost before the reply: closed"))
        for future in (lost, done):
            future.add_done_callback(lambda f: f.exception())

        async def sent() -> list[asyncio.Future[Any]]:
            return [lost, done]

        return sent()

    monkeypatch.setattr(waits, "execute", closed_by_server)
    monkeypatch.setattr(waits, "send", closed_by_server_send)

    with anyio.fail_after(PROMPT), pytest.raises(BrokerOutcomeUnknownError):
        await rh.broker.reserve([queue], count=1, lease=LONG, timeout=seconds)
    assert tries == 1


async def enqueue_unseen(rh: RedisHarness, queue: str) -> Job:
    """Store a ready job but take its wake-up token away in the same transaction: a blocked
    wait does not wake, yet the reserve behind it finds the job once the wait is cut short."""
    job = make_job(queue)
    request = requests.Enqueue([job], [stored_form(job)], [0], [queue])
    keys, args = request.keys(rh.broker.keys), request.args()
    script = SCRIPTS["enqueue"]
    await rh.client.script_load(script.source)
    async with rh.client.pipeline(transaction=True) as pipe:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.delete(rh.broker.keys.wake(queue))
        await pipe.execute()
    return job


async def blocked_clients(rh: RedisHarness) -> int:
    """How many clients the server holds in a blocking command now (on a shared server, other
    tests' waits too: count on a server of the test's own, ``own_rh``)."""
    return int((await rh.client.info("clients"))["blocked_clients"])


async def until_blocked(rh: RedisHarness, before: int) -> None:
    """Return once the server holds more clients blocked than ``before``: a wait is in its
    ``BLPOP``. (That every task is blocked only says the wait was sent, or is still connecting:
    a job stored before its ``BLPOP`` arrives is found by the reserve in front of it.)"""
    # The server's state is only polled: no event crosses from Redis to the test.
    while await blocked_clients(rh) <= before:  # noqa: ASYNC110
        await anyio.sleep(0.005)


async def test_a_cancelled_wait_hands_back_what_the_reserve_behind_it_took(
    own_rh: RedisHarness,
) -> None:
    queue = new_queue()
    got: list[Lease] = []
    returned = False
    before = await blocked_clients(own_rh)

    async def consume() -> None:
        nonlocal returned
        got.extend(await own_rh.broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK))
        returned = True

    with anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await until_blocked(own_rh, before)
            job = await enqueue_unseen(own_rh, queue)
            tg.cancel_scope.cancel()  # CLIENT UNBLOCK: the reserve behind the BLPOP takes it

    assert (returned, got) == (False, [])  # the cancellation propagated
    fetched = await own_rh.broker.get(job.id)
    assert fetched is not None
    assert (fetched.status, fetched.attempts) == (JobStatus.PENDING, 0)  # handed back
    assert (await own_rh.broker.stats([queue]))[queue].running == 0
