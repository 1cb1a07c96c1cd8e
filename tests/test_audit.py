"""taskit.audit: job events published through the broker and read by consumer groups, in one
process on the memory broker, and across processes on the real Redis (a `taskit worker`
subprocess publishes, this process subscribes)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
import redis

import taskit.audit
from taskit import App, MemoryBroker
from taskit.broker.redis import RedisBroker
from taskit.clock import FakeClock
from taskit.events import EventKind, JobEvent
from tests.e2e.helpers import worker_process

pytestmark = pytest.mark.anyio


def memory_app(clock: FakeClock | None = None) -> App:
    app = App(MemoryBroker(clock=clock))

    @app.task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    return app


async def take(events: AsyncIterator[taskit.audit.Delivery], n: int) -> list[taskit.audit.Delivery]:
    got = []
    with anyio.fail_after(10):
        async for delivery in events:
            got.append(delivery)
            if len(got) == n:
                return got
    raise AssertionError("the subscription ended")


async def test_published_events_reach_every_group_in_order() -> None:
    app = memory_app()
    taskit.audit.publish(app, maxlen=100)
    job = await app.get_task("double").enqueue(21)
    await app.worker(name="w1").run(burst=True)
    for group in ("web", "billing"):
        got = await take(taskit.audit.subscribe(app, group=group, poll=0.01), 3)
        assert [d.event.kind for d in got] == ["created", "started", "completed"]
        assert {d.event.job_id for d in got} == {job.id}
        assert got[2].event.worker == "w1"
        for delivery in got:
            await delivery.ack()


async def test_an_unacknowledged_event_is_delivered_again_after_claim_after() -> None:
    clock = FakeClock()
    app = memory_app(clock)
    taskit.audit.publish(app, kinds=[EventKind.CREATED])
    await app.get_task("double").enqueue(1)
    await app.get_task("double").enqueue(2)
    first, second = await take(taskit.audit.subscribe(app, group="g", consumer="a", poll=0.01), 2)
    await first.ack()  # the second is left: its consumer "died"
    clock.advance(31.0)
    (again,) = await take(taskit.audit.subscribe(app, group="g", consumer="b", poll=0.01), 1)
    assert (again.id, again.event) == (second.id, second.event)


async def test_consume_calls_the_handler_and_acknowledges() -> None:
    app = memory_app()
    taskit.audit.publish(app)
    await app.get_task("double").enqueue(3)
    seen: list[JobEvent] = []

    async def handler(event: JobEvent) -> None:
        seen.append(event)

    with anyio.move_on_after(0.3):
        await taskit.audit.consume(app, handler, group="g", poll=0.01)
    assert [e.kind for e in seen] == ["created"]
    assert (
        await app.broker.stream_read(taskit.audit.STREAM, "g", "x", count=9, claim_after=0.001)
        == []
    )


async def test_an_unreadable_entry_is_skipped_and_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = memory_app()
    taskit.audit.publish(app)
    await app.broker.stream_add(taskit.audit.STREAM, b"\x01junk", maxlen=10)
    await app.get_task("double").enqueue(3)
    (got,) = await take(taskit.audit.subscribe(app, group="g", poll=0.01), 1)
    assert got.event.kind == "created"
    assert "is not readable" in caplog.text


async def test_bad_arguments_are_refused() -> None:
    app = memory_app()
    with pytest.raises(TypeError, match="App"):
        taskit.audit.publish("app")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maxlen"):
        taskit.audit.publish(app, maxlen=0)
    with pytest.raises(ValueError, match="unknown event kind"):
        taskit.audit.publish(app, kinds=["exploded"])
    for bad in ({"group": ""}, {"group": "g", "consumer": ""}, {"group": "g", "poll": 0},
                {"group": "g", "claim_after": -1}, {"group": "g", "batch": 1.5}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad.keys() - {"group"}), "group")):
            await anext(taskit.audit.subscribe(app, **bad))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        await taskit.audit.consume(app, "nope", group="g")  # type: ignore[arg-type]


def test_an_event_round_trips_through_the_wire_format() -> None:
    with pytest.raises(ValueError, match="wire version"):
        taskit.audit.decode(b"\x92\x02\x80")


# -- across processes, on the real Redis ----------------------------------------------------
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Redis broker's transports


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"audit-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    doomed = list(client.scan_iter(match="{" + name + "}*", count=500))
    if doomed:
        client.delete(*doomed)
    client.close()


@pytest.mark.redis
async def test_a_workers_events_are_seen_by_a_subscriber_in_another_process(
    redis_url: str, prefix: str
) -> None:
    app = App(RedisBroker(redis_url, prefix=prefix))  # enqueues by name; publishes nothing
    env = {"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix}
    try:
        with worker_process("tests.apps.audit_app:app", env):
            ok = await app.remote("audit.double").enqueue(21)
            bad = await app.remote("audit.refuse").enqueue()
            got = await take(taskit.audit.subscribe(app, group="web", poll=0.05), 4)
        by_job = {(d.event.job_id, d.event.kind) for d in got}
        assert by_job == {(ok.id, "started"), (ok.id, "completed"),
                          (bad.id, "started"), (bad.id, "failed")}  # fmt: skip
        failed = next(d.event for d in got if d.event.kind == "failed")
        assert failed.error == "refused"
        assert failed.worker  # the worker process's name
        for delivery in got[:3]:
            await delivery.ack()
        # The fourth was not acknowledged: another consumer of the group gets it again.
        again = await take(
            taskit.audit.subscribe(app, group="web", consumer="b", claim_after=0.2, poll=0.05), 1
        )
        assert again[0].id == got[3].id
        # Another group reads the whole stream from its start.
        assert len(await take(taskit.audit.subscribe(app, group="other", poll=0.05), 4)) == 4
    finally:
        await app.broker.close()
