"""The worker: ordering, delays, leases (expiry, fencing, heartbeat), cancel, burst, embedding.

Where a lease or a heartbeat must really pass, the visibility timeout is a fraction of a second;
everything else waits on events, results or a FakeClock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from taskit import (
    App,
    Fail,
    Job,
    JobResult,
    JobStatus,
    MemoryBroker,
    QueueStats,
    Retry,
    Settings,
    Worker,
    WorkerManager,
    WorkerStats,
)
from taskit.clock import FakeClock
from taskit.events import EventKind, Events
from taskit.job import Outcome, OutcomeKind, utc_from_timestamp
from taskit.worker import WorkerParts
from tests._doubles import StubTask, WatchedBroker, no_app, stub_job

pytestmark = pytest.mark.anyio

WAIT = 5.0  # upper bound on any wait: a hang fails the test instead of stalling the run
SHORT_LEASE = 0.3  # a visibility timeout that really passes during a test


def make_app(broker: MemoryBroker | None = None, **settings: Any) -> App:
    settings.setdefault("backoff", 0.0)
    return App(broker if broker is not None else MemoryBroker(), settings=Settings(**settings))


async def burst(app: App, queues: Sequence[str] | None = None, concurrency: int = 1) -> WorkerStats:
    with anyio.fail_after(WAIT):
        return await app.worker(queues=queues, concurrency=concurrency).run(burst=True)


async def stored(app: App, job_id: str) -> Job:
    job = await app.get_job(job_id)
    assert job is not None
    return job


def no_delay(attempt: int) -> float:
    return 0.0


# -- construction -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"queues": ["a", ""]}, "queues"),
        ({"queues": ["a", "  "]}, "queues"),  # a task's queue=" " is refused too
        # a string is a sequence of strings: queues="emails" served six one-letter queues
        ({"queues": "emails"}, "queues must be a list of names, got the string 'emails'"),
    ],
)
def test_bad_worker_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_app().worker(**options)
    with pytest.raises(ValueError, match=match):
        WorkerManager(make_app(), **options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"concurrency": 2.5}, "concurrency must be an int, got 2.5"),
        ({"concurrency": True}, "concurrency must be an int, got True"),
        ({"concurrency": "4"}, "concurrency must be an int, got '4'"),
        ({"concurrency": -1}, "concurrency must be >= 1"),
        ({"concurrency": 2**31}, "concurrency must be <="),
        ({"name": ""}, "name must be a non-empty string"),
        ({"name": 5}, "name must be a non-empty string"),
    ],
)
def test_worker_arguments_are_checked_for_type_and_range_when_it_is_built(
    options: dict[str, Any], match: str
) -> None:
    app = make_app()
    with pytest.raises(ValueError, match=match):
        app.worker(**options)
    with pytest.raises(ValueError, match=match):
        Worker(app, **options)


def test_worker_defaults_come_from_settings() -> None:
    app = make_app(default_queue="jobs", concurrency=3)
    worker = app.worker()
    assert isinstance(worker, Worker)
    assert (worker.queues, worker.concurrency) == (["jobs"], 3)


async def test_a_worker_runs_on_its_parts_without_an_app(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(App, "__init__", no_app)
    caplog.set_level("INFO", "taskit.worker")
    events = Events()
    seen: list[tuple[EventKind, str]] = []
    events.subscribe(
        lambda event: seen.append((event.kind, event.task)), ["completed", "dead_lettered"]
    )

    async def add(a: int, b: int) -> int:
        return a + b

    broker = WatchedBroker()
    await broker.enqueue([stub_job("add", 1, 2), stub_job("nobody")])
    parts = WorkerParts(broker=broker, tasks={"add": StubTask(add, name="add")}, events=events)
    worker = Worker(parts, concurrency=2, name="bare")

    with anyio.fail_after(WAIT):
        stats = await worker.run(burst=True)

    assert (stats.completed, stats.dead_lettered, worker.jobs_done) == (1, 1, 2)
    settled = sorted((o.kind.value, applied) for o, applied in broker.settled)
    assert settled == [("complete", True), ("dead_letter", True)]
    assert sorted(seen) == [(EventKind.COMPLETED, "add"), (EventKind.DEAD_LETTERED, "nobody")]
    assert "worker bare starting: queues=default concurrency=2 broker=WatchedBroker" in caplog.text


# -- order ------------------------------------------------------------------------------------
async def test_higher_priority_first_and_fifo_within_a_priority() -> None:
    app = make_app()
    order: list[str] = []

    @app.task
    async def record(label: str) -> None:
        order.append(label)

    for label, priority in [
        ("low-1", 0),
        ("high-1", 5),
        ("low-2", 0),
        ("mid", 2),
        ("high-2", 5),
        ("negative", -3),
        ("low-3", 0),
    ]:
        await record.options(priority=priority).enqueue(label)
    await burst(app, concurrency=1)

    assert order == ["high-1", "high-2", "mid", "low-1", "low-2", "low-3", "negative"]


async def test_queues_are_drained_in_the_order_given() -> None:
    app = make_app()
    order: list[str] = []

    @app.task
    async def record(label: str) -> None:
        order.append(label)

    await record.options(queue="b", priority=9).enqueue("b-1")
    await record.options(queue="a").enqueue("a-1")
    await record.options(queue="b").enqueue("b-2")
    await record.options(queue="a").enqueue("a-2")
    await record.options(queue="c").enqueue("c-1")  # not served by this worker
    await burst(app, queues=["a", "b"], concurrency=1)

    assert order == ["a-1", "a-2", "b-1", "b-2"]
    assert (await app.stats(["c"]))["c"].queued == 1


async def test_a_job_enqueued_to_an_idle_worker_starts_at_once() -> None:
    app = make_app()

    @app.task
    async def echo(x: int) -> int:
        return x

    async with app.worker(concurrency=1):
        await anyio.wait_all_tasks_blocked()  # the worker is idle, blocked in reserve
        started = anyio.current_time()
        job = await echo.enqueue(7)
        result = await app.result(job.id, timeout=WAIT)

    assert result.value == 7
    assert anyio.current_time() - started < 1.0  # woken, not polled (a poll would wait 5 s)


# -- delayed jobs -----------------------------------------------------------------------------
async def test_delayed_jobs_never_run_early() -> None:
    clock = FakeClock()
    app = make_app(MemoryBroker(clock=clock))
    ran: list[tuple[str, float]] = []

    @app.task
    async def record(label: str) -> None:
        ran.append((label, clock.time()))

    start = clock.time()
    later = await record.schedule(60, "delayed")
    at_time = await record.schedule(utc_from_timestamp(start + 90), "at-time")

    async def run_marker(label: str) -> None:
        # A job enqueued now runs after any due one (FIFO by enqueue order): once it is done,
        # a due delayed job would have run too.
        marker = await record.enqueue(label)
        await app.result(marker.id, timeout=WAIT)

    async with app.worker(concurrency=1):
        await run_marker("m0")
        clock.advance(59.999)
        await run_marker("m1")
        assert (await stored(app, later.id)).status is JobStatus.SCHEDULED
        clock.advance(0.001)
        await app.result(later.id, timeout=WAIT)
        clock.advance(29.999)
        await run_marker("m2")
        assert (await stored(app, at_time.id)).status is JobStatus.SCHEDULED
        clock.advance(0.001)
        await app.result(at_time.id, timeout=WAIT)

    assert ran == [
        ("m0", start),
        ("m1", start + 59.999),
        ("delayed", start + 60),
        ("m2", start + 89.999),
        ("at-time", start + 90),
    ]


# -- leases -----------------------------------------------------------------------------------
async def test_an_expired_lease_is_redelivered_and_its_stale_settle_ignored() -> None:
    app = make_app(visibility_timeout=SHORT_LEASE, reaper_interval=0.05)
    runs = 0

    @app.task(backoff=no_delay)
    async def work() -> str:
        nonlocal runs
        runs += 1
        return "done"

    job = await work.enqueue()
    # A worker reserves the job and dies: its lease is never extended or settled.
    [dead] = await app.broker.reserve(["default"], count=1, lease=SHORT_LEASE, timeout=0)
    assert dead.job.attempts == 1

    async with app.worker(concurrency=1):
        result = await app.result(job.id, timeout=WAIT)

    assert result.value == "done"
    done = await stored(app, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 2
    assert done.error_type == "TimeoutError"  # the lost attempt is on record
    assert done.error is not None
    assert "lease expired" in done.error
    late = Outcome(
        job_id=job.id,
        token=dead.token,
        kind=OutcomeKind.COMPLETE,
        result=JobResult(success=True, value="stale"),
    )
    assert await app.broker.settle([late]) == [False]
    assert await stored(app, job.id) == done
    assert runs == 1  # the dead worker's attempt never ran here; the redelivery did


async def test_a_run_that_outlives_its_lease_unseen_has_its_settle_rejected() -> None:
    """The heartbeat is out of the picture (a 30 s lease is extended every 10 s, and the test
    is over long before), so only fencing protects the job: the first run's lease passes on the
    fake clock, another worker reclaims and reruns the job, and the first run's late settle is
    rejected. Both runs happen on one worker, the worst case for its own bookkeeping."""
    clock = FakeClock()
    broker = WatchedBroker(clock)
    app = make_app(broker, visibility_timeout=30.0, reaper_interval=60.0)
    first_started = anyio.Event()
    release_first = anyio.Event()
    calls = 0

    @app.task(backoff=no_delay)
    async def work() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_started.set()
            await release_first.wait()
            return "first run"
        return "second run"

    job = await work.enqueue()
    async with app.worker(concurrency=2) as worker:
        with anyio.fail_after(WAIT):
            await first_started.wait()
        clock.advance(31)  # the first run's lease has passed
        [taken] = await broker.reclaim(["default"], lease=30.0)  # another worker's reaper
        retry = Outcome(job_id=job.id, token=taken.token, kind=OutcomeKind.RETRY)
        assert await broker.settle([retry]) == [True]
        result = await app.result(job.id, timeout=WAIT)
        assert result.value == "second run"
        release_first.set()
        settled = await broker.wait_settled(3)

    first_outcome, applied = settled[2]
    assert (first_outcome.kind, applied) == (OutcomeKind.COMPLETE, False)
    assert first_outcome.result is not None
    assert first_outcome.result.value == "first run"
    final = await stored(app, job.id)
    assert final.status is JobStatus.COMPLETED
    assert final.attempts == 2
    assert final.result is not None
    assert final.result.value == "second run"
    assert (worker.stats.completed, worker.stats.lost) == (1, 1)
    assert (await app.stats())["default"].running == 0


async def test_the_heartbeat_keeps_a_long_job_leased() -> None:
    app = make_app(visibility_timeout=SHORT_LEASE, reaper_interval=0.05)
    starts = 0

    @app.task(backoff=no_delay)
    async def long_job() -> str:
        nonlocal starts
        starts += 1
        await anyio.sleep(3.5 * SHORT_LEASE)  # the work itself: several leases long
        return "finished"

    job = await long_job.enqueue()
    stats = await burst(app)

    assert starts == 1
    done = await stored(app, job.id)
    assert (done.status, done.attempts, done.error) == (JobStatus.COMPLETED, 1, None)
    assert (stats.completed, stats.retried, stats.lost) == (1, 0, 0)


# -- cancel -----------------------------------------------------------------------------------
async def test_a_cancelled_waiting_job_never_runs() -> None:
    app = make_app()
    ran: list[str] = []

    @app.task
    async def record(label: str) -> None:
        ran.append(label)

    queued = await record.enqueue("queued")
    scheduled = await record.schedule(0.05, "scheduled")
    kept = await record.enqueue("kept")
    assert await app.cancel(queued.id) is True
    assert await app.cancel(scheduled.id) is True

    stats = await burst(app)

    assert ran == ["kept"]
    assert stats.completed == 1
    for job in (queued, scheduled):
        assert (await stored(app, job.id)).status is JobStatus.CANCELLED
    assert (await stored(app, kept.id)).status is JobStatus.COMPLETED


async def test_cancelling_a_running_job_stops_it_within_a_heartbeat() -> None:
    app = make_app(visibility_timeout=SHORT_LEASE)
    started = anyio.Event()
    calls = 0
    stopped = False
    failures: list[BaseException] = []

    @app.task(max_retries=3, on_failure=lambda job, error: failures.append(error))
    async def endless() -> None:
        nonlocal calls, stopped
        calls += 1
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped = True

    job = await endless.enqueue()
    async with app.worker(concurrency=1) as worker:
        with anyio.fail_after(WAIT):
            await started.wait()
        asked = anyio.current_time()
        assert await app.cancel(job.id) is True
        result = await app.result(job.id, timeout=WAIT)
        took = anyio.current_time() - asked

    assert took < 3 * SHORT_LEASE  # a heartbeat comes every third of the lease
    assert stopped
    assert (result.success, result.error_type) == (False, "Cancelled")
    cancelled = await stored(app, job.id)
    assert (cancelled.status, cancelled.attempts, calls) == (JobStatus.CANCELLED, 1, 1)
    assert (worker.stats.cancelled, worker.stats.retried) == (1, 0)
    assert failures == []
    assert await app.cancel(job.id) is False


async def test_cancelling_a_finished_job_is_false() -> None:
    app = make_app()

    @app.task
    async def echo(x: int) -> int:
        return x

    job = await echo.enqueue(1)
    await burst(app)

    assert await app.cancel(job.id) is False
    assert (await stored(app, job.id)).status is JobStatus.COMPLETED


# -- burst and embedding ----------------------------------------------------------------------
async def test_burst_returns_when_everything_is_done_with_its_counts() -> None:
    app = make_app()
    flaky_calls = 0

    @app.task
    async def ok(x: int) -> int:
        return x

    @app.task
    def sync_ok(x: int) -> int:
        return x

    @app.task
    async def refuse() -> None:
        raise Fail("no")

    @app.task(max_retries=5)
    async def later() -> str:
        nonlocal flaky_calls
        flaky_calls += 1
        if flaky_calls < 3:
            raise Retry(delay=0.05)  # a short, real delayed retry
        return "third time"

    @app.task(max_retries=1, backoff=0.02)
    async def hopeless() -> None:
        raise RuntimeError("never")

    jobs = [await ok.enqueue(1), await sync_ok.enqueue(2), await ok.enqueue(3)]
    refused, retried, dead = await refuse.enqueue(), await later.enqueue(), await hopeless.enqueue()

    stats = await burst(app, concurrency=3)

    assert stats == WorkerStats(completed=4, failed=1, retried=3, dead_lettered=1)
    for job in [*jobs, retried]:
        assert (await stored(app, job.id)).status is JobStatus.COMPLETED
    assert (await stored(app, refused.id)).status is JobStatus.FAILED
    assert (await stored(app, dead.id)).status is JobStatus.DEAD_LETTER
    assert (await stored(app, retried.id)).attempts == 3
    counts = (await app.stats())["default"]
    assert counts == QueueStats(completed=4, failed=1, dead=1)


async def test_burst_on_empty_queues_returns_at_once() -> None:
    app = make_app()
    assert await burst(app) == WorkerStats()


async def test_the_embedded_worker_runs_jobs_and_exits_cleanly() -> None:
    app = make_app(grace_period=5.0)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    @app.task
    def triple(x: int) -> int:
        return 3 * x

    with anyio.fail_after(WAIT):
        async with app.worker(concurrency=2) as worker:
            first = await double.enqueue(2)
            second = await triple.enqueue(3)
            assert (await app.result(first.id, timeout=WAIT)).value == 4
            assert (await app.result(second.id, timeout=WAIT)).value == 9
            third = await double.enqueue(5)
            assert (await app.result(third.id, timeout=WAIT)).value == 10

    assert worker.stats == WorkerStats(completed=3)
    assert (await app.stats())["default"] == QueueStats(completed=3)


async def test_an_error_in_the_embedding_code_propagates_and_stops_the_worker() -> None:
    app = make_app()

    @app.task
    async def echo(x: int) -> int:
        return x

    async def application() -> None:
        async with app.worker(concurrency=1):
            job = await echo.enqueue(1)
            await app.result(job.id, timeout=WAIT)
            raise KeyError("app failed")

    with anyio.fail_after(WAIT), pytest.raises(KeyError, match="app failed"):
        await application()
    assert (await app.stats())["default"].running == 0


async def test_cancelling_the_embedding_scope_stops_the_worker() -> None:
    app = make_app()
    with anyio.fail_after(WAIT):
        with anyio.CancelScope() as scope:
            async with app.worker(concurrency=1):
                scope.cancel()
                await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_several_workers_share_the_jobs() -> None:
    app = make_app()
    seen: list[int] = []

    @app.task
    async def record(n: int) -> None:
        seen.append(n)
        await anyio.lowlevel.checkpoint()

    for n in range(20):
        await record.enqueue(n)
    stats: list[WorkerStats] = []

    async def one() -> None:
        stats.append(await burst(app, concurrency=2))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)

    assert sorted(seen) == list(range(20))  # each exactly once
    assert sum(s.completed for s in stats) == 20


async def test_the_reaper_asks_the_backoff_only_when_a_retry_will_happen() -> None:
    """A job whose lease expires on its last attempt is dead-lettered without calling the
    policy: the RQ spelling ``[10, 60][n - 1]`` must not raise on the dead letter."""
    broker = WatchedBroker()
    app = make_app(broker, visibility_timeout=SHORT_LEASE, reaper_interval=0.05)
    asked: list[int] = []

    def rq_style(attempt: int) -> float:
        asked.append(attempt)
        return [10.0][attempt - 1]

    @app.task(max_retries=0, backoff=rq_style)
    async def work() -> None: ...

    job = await work.enqueue()
    [dead] = await app.broker.reserve(["default"], count=1, lease=SHORT_LEASE, timeout=0)
    async with app.worker(concurrency=1):
        [(outcome, applied)] = await broker.wait_settled(1)

    assert (outcome.kind, applied) == (OutcomeKind.DEAD_LETTER, True)
    assert (await stored(app, job.id)).status is JobStatus.DEAD_LETTER
    assert dead.job.attempts == 1
    assert asked == []
