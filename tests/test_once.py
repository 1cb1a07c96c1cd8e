"""The ``once`` guard (``App.once``, ``taskit.once``): one run per key does the work.

Unit tests on the memory broker with a fake clock; then workers racing on real concurrency
(two worker threads, each with its own event loop) on the memory broker and on real Redis, with
async and sync handlers: every key's work is done exactly once and every job completes.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import anyio
import pytest
import redis

from taskit import App, Fixed, JobStatus, MemoryBroker, Once, OnceBusy, Retry, TaskitError
from taskit.broker.base import Broker, OnceState
from taskit.broker.redis import RedisBroker
from taskit.clock import FakeClock
from taskit.errors import BrokerConnectionError


class Boom(Exception):
    pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> Iterator[App]:
    made = App(MemoryBroker(clock=clock))
    yield made
    made.close_sync()


@pytest.mark.anyio
async def test_the_first_run_does_the_work_and_later_runs_skip(app: App) -> None:
    did = []
    for _ in range(3):
        async with app.once("mail:1") as first:
            if first:
                did.append("sent")
    assert did == ["sent"]
    async with app.once("mail:2") as first:  # another key: its own work
        assert first


@pytest.mark.anyio
async def test_a_body_that_raises_releases_the_key_for_a_retry(app: App) -> None:
    async def fail_inside() -> None:
        async with app.once("k") as first:
            assert first
            raise Boom

    with pytest.raises(Boom):
        await fail_inside()
    async with app.once("k") as first:
        assert first  # the retry does the work
    async with app.once("k") as first:
        assert not first


@pytest.mark.anyio
async def test_a_cancelled_body_releases_the_key(app: App) -> None:
    with anyio.move_on_after(0.05):
        async with app.once("k") as first:
            assert first
            await anyio.sleep(10)
    async with app.once("k") as first:
        assert first


@pytest.mark.anyio
async def test_a_key_held_by_another_run_raises_once_busy(app: App) -> None:
    assert await app.broker.begin_once("k", "someone", hold=30.0) is OnceState.TAKEN
    with pytest.raises(OnceBusy) as caught:
        async with app.once("k"):
            pytest.fail("the body must not run")
    assert isinstance(caught.value, Retry)
    assert isinstance(caught.value, TaskitError)
    assert caught.value.key == "k"
    assert caught.value.delay is None


@pytest.mark.anyio
async def test_a_worker_that_died_in_the_body_holds_the_key_for_hold(
    app: App, clock: FakeClock
) -> None:
    assert await app.broker.begin_once("k", "dead-worker", hold=30.0) is OnceState.TAKEN
    clock.advance(29)
    with pytest.raises(OnceBusy):
        async with app.once("k"):
            pass
    clock.advance(2)  # the hold expired: a retry may do the work (at most once, not exactly)
    async with app.once("k") as first:
        assert first


@pytest.mark.anyio
async def test_the_default_hold_is_the_visibility_timeout(app: App, clock: FakeClock) -> None:
    guard = app.once("k")
    assert guard.hold == app.settings.visibility_timeout
    assert guard.ttl == 86_400.0
    assert await guard.__aenter__()  # entered, never left: its worker died
    clock.advance(app.settings.visibility_timeout + 1)
    async with app.once("k") as first:
        assert first


@pytest.mark.anyio
async def test_a_success_is_remembered_for_ttl(app: App, clock: FakeClock) -> None:
    async with app.once("k", ttl=60) as first:
        assert first
    clock.advance(59)
    async with app.once("k", ttl=60) as first:
        assert not first
    clock.advance(2)
    async with app.once("k", ttl=60) as first:
        assert first


@pytest.mark.anyio
async def test_a_body_that_outlasts_its_hold_is_recorded_with_a_warning(
    app: App, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="taskit.once"):
        async with app.once("k", hold=5) as first:
            assert first
            clock.advance(6)
    assert "outlasted its 5s hold" in caplog.text
    async with app.once("k") as first:
        assert not first  # the work happened: it is remembered all the same


class FlakyEnd(MemoryBroker):
    """Its first ``end_once`` fails as a dropped connection would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def end_once(self, key: str, token: str, *, done_for: float | None) -> bool:
        if self.failures:
            self.failures -= 1
            raise BrokerConnectionError("connection dropped")
        return await super().end_once(key, token, done_for=done_for)


@pytest.mark.anyio
async def test_recording_a_success_is_tried_again_through_a_short_outage() -> None:
    app = App(FlakyEnd())
    async with app.once("k") as first:
        assert first
    async with app.once("k") as first:
        assert not first
    await app.close()


def test_sync_code_uses_with(app: App) -> None:
    did = []
    for _ in range(2):
        with app.once("sync") as first:
            if first:
                did.append(1)
    with pytest.raises(Boom), app.once("sync-fail"):
        raise Boom
    with app.once("sync-fail") as first:
        assert first
    assert did == [1]


@pytest.mark.anyio
async def test_bad_keys_and_durations_are_refused(app: App) -> None:
    for bad in ("", 3):
        with pytest.raises(ValueError, match="key"):
            app.once(bad)  # type: ignore[arg-type]
    for kwargs in ({"ttl": 0}, {"ttl": float("nan")}, {"hold": -1}, {"hold": True}):
        with pytest.raises(ValueError, match=r"ttl|hold"):
            app.once("k", **kwargs)
    guard = app.once("k")
    assert isinstance(guard, Once)
    async with guard:
        with pytest.raises(RuntimeError, match="already entered"):
            await guard.__aenter__()
    async with guard as first:  # entered again after it exited: a new run
        assert not first


@pytest.mark.anyio
async def test_in_a_worker_a_failed_attempt_releases_and_the_retry_does_the_work() -> None:
    app = App(MemoryBroker())
    sent: list[int] = []

    @app.task(max_retries=2, backoff=Fixed(0.0))
    async def welcome(user: int) -> str:
        async with app.once(f"welcome:{user}") as first:
            if not first:
                return "skipped"
            sent.append(user)
            if sent.count(user) == 1:
                raise Boom("mail server down")  # after the side effect... recorded as not done
            return "sent"

    job = await welcome.enqueue(7)
    again = await welcome.enqueue(7)
    await app.worker(concurrency=1).run(burst=True)
    results = [await app.result(job.id), await app.result(again.id)]
    assert sorted(r.value for r in results) == ["sent", "skipped"]
    assert sent == [7, 7]  # released on failure, so the retry did it (the body is not atomic)
    await app.close()


# -- racing workers ------------------------------------------------------------------------
ORDERS, COPIES = 8, 4


def charging_app(broker: Broker, done: Counter[str], lock: threading.Lock) -> App:
    """An App whose ``charge_async`` / ``charge_sync`` tasks charge each order once, counting
    in ``done`` how many times the work was done."""
    app = App(broker)

    def charged(order: str) -> None:
        with lock:
            done[order] += 1

    @app.task(name="charge_async", max_retries=200, backoff=Fixed(0.01))
    async def charge_async(order: str) -> bool:
        async with app.once(f"charge:{order}", hold=30) as first:
            if first:
                charged(order)
                await anyio.sleep(0.02)  # long enough for the other worker to collide
            return first

    @app.task(name="charge_sync", max_retries=200, backoff=Fixed(0.01))
    def charge_sync(order: str) -> bool:
        with app.once(f"charge:{order}", hold=30) as first:
            if first:
                charged(order)
                threading.Event().wait(0.02)
            return first

    return app


def race(make_broker: Callable[[], Broker], sync: bool) -> tuple[Counter[str], list[JobStatus]]:
    """``COPIES`` jobs per order, run by two workers in two threads, each with its own event loop
    and App (as two worker processes would): how many times each order's work was done, and every
    job's final status."""
    done: Counter[str] = Counter()
    lock = threading.Lock()
    producer = charging_app(make_broker(), done, lock)
    task = producer.get_task("charge_sync" if sync else "charge_async")
    jobs = [task.prepare(f"o{n}") for n in range(ORDERS) for _ in range(COPIES)]
    producer.enqueue_many_sync(jobs)

    async def work() -> None:
        app = charging_app(make_broker(), done, lock)
        await app.worker(concurrency=4).run(burst=True)
        await app.close()

    threads = [threading.Thread(target=anyio.run, args=(work,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses, retried = [], 0
    for job in jobs:
        got = producer.run_sync(producer.broker.get, job.id)
        assert got is not None
        statuses.append(got.status)
        retried += got.attempts > 1
    assert retried, "no run found a key held: the race did not happen"
    producer.close_sync()
    return done, statuses


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_racing_workers_on_the_memory_broker_do_each_key_once(sync: bool) -> None:
    shared = MemoryBroker()
    done, statuses = race(lambda: shared, sync)
    assert done == Counter({f"o{n}": 1 for n in range(ORDERS)})
    assert statuses == [JobStatus.COMPLETED] * ORDERS * COPIES


@pytest.mark.redis
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_racing_workers_on_redis_do_each_key_once(redis_url: str, sync: bool) -> None:
    prefix = f"once-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    try:
        done, statuses = race(lambda: RedisBroker(redis_url, prefix=prefix), sync)
        once_keys = list(client.scan_iter(match="{" + prefix + "}:once:*", count=500))
        assert len(once_keys) == ORDERS  # each order's done mark, with its TTL
        assert all(0 < client.pttl(key) <= 86_400_000 for key in once_keys)
    finally:
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
    assert done == Counter({f"o{n}": 1 for n in range(ORDERS)})
    assert statuses == [JobStatus.COMPLETED] * ORDERS * COPIES
