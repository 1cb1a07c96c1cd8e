"""Shutdown loses nothing: running jobs finish within the grace period or go back to the queue at
once (PENDING, attempt refunded), jobs not yet started stay queued (those the worker held waiting
for a runner, its prefetch, are handed back at once, unrun), nothing stays reserved.

The scenarios run with ``prefetch`` 0 (only idle runners reserve) and 2 (two of the three queued
jobs held waiting when the stop comes): each held one is one more release in the stats."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from taskit import App, Job, JobStatus, MemoryBroker, Settings, Task, WorkerStats

pytestmark = pytest.mark.anyio

WAIT = 5.0
GRACE = 0.3  # the grace period of the graceful tests: it really passes
LONG_GRACE = 30.0  # a grace period that must never be waited out
PREFETCH = pytest.mark.parametrize("prefetch", [0, 2])


@dataclass
class Scenario:
    """Four runners busy with two short jobs (they finish when ``release`` is set) and two
    endless ones, and three more jobs queued behind them (or held waiting: the prefetch)."""

    app: App
    short: Task[[int], Any]
    shorts: list[Job] = field(default_factory=list)
    longs: list[Job] = field(default_factory=list)
    queued: list[Job] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)
    all_started: anyio.Event = field(default_factory=anyio.Event)
    started: int = 0
    long_stopped: int = 0

    @property
    def jobs(self) -> list[Job]:
        return [*self.shorts, *self.longs, *self.queued]


async def scenario(**settings: Any) -> Scenario:
    app = App(MemoryBroker(), settings=Settings(**settings))

    async def short(n: int) -> int:
        note_start()
        await s.release.wait()
        return n

    async def endless(n: int) -> None:
        note_start()
        try:
            await anyio.sleep_forever()
        finally:
            s.long_stopped += 1

    def note_start() -> None:
        s.started += 1
        if s.started == 4:
            s.all_started.set()

    s = Scenario(app, app.task(name="short")(short))
    long_task = app.task(name="endless")(endless)
    s.shorts = [await s.short.enqueue(i) for i in range(2)]
    s.longs = [await long_task.enqueue(i) for i in range(2)]
    s.queued = [await s.short.enqueue(i) for i in range(10, 13)]
    return s


async def status(app: App, job: Job) -> tuple[JobStatus, int]:
    stored = await app.get_job(job.id)
    assert stored is not None
    return stored.status, stored.attempts


async def assert_nothing_lost(s: Scenario, completed: list[Job], prefetch: int = 0) -> None:
    """``completed`` finished; every other job is PENDING with no attempt counted, and the
    next reserve hands them out at once, in their original order (with ``prefetch``, as a set:
    held jobs and running ones may be handed back by two settles, and only the jobs of one
    settle keep their order at the front of the queue, docs/redis.md "Order")."""
    for job in completed:
        assert await status(s.app, job) == (JobStatus.COMPLETED, 1)
    rest = [job for job in s.jobs if job not in completed]
    for job in rest:
        assert await status(s.app, job) == (JobStatus.PENDING, 0)
    counts = (await s.app.stats())["default"]
    assert (counts.running, counts.scheduled) == (0, 0)
    assert (counts.completed, counts.queued) == (len(completed), len(rest))
    assert counts.completed + counts.queued == len(s.jobs)
    leases = await s.app.broker.reserve(["default"], count=10, lease=30.0, timeout=0)
    got, want = [lease.job.id for lease in leases], [job.id for job in rest]
    if prefetch:
        assert sorted(got) == sorted(want)
    else:
        assert got == want


@PREFETCH
async def test_graceful_stop_finishes_short_jobs_and_hands_back_the_rest(prefetch: int) -> None:
    s = await scenario(grace_period=GRACE, visibility_timeout=30.0)
    worker = s.app.worker(concurrency=4, prefetch=prefetch)
    stats = WorkerStats()

    async def run() -> None:
        nonlocal stats
        stats = await worker.run()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await s.all_started.wait()
            stopped = anyio.current_time()
            worker.stop()
            s.release.set()  # the short jobs finish within the grace period
        took = anyio.current_time() - stopped

    assert GRACE * 0.9 <= took < GRACE + 2  # it waited out the grace period for the long ones
    assert s.long_stopped == 2
    assert stats == WorkerStats(completed=2, released=2 + prefetch)
    # Back in the queue at once: the lease is 30 s, and none of it had to pass.
    await assert_nothing_lost(s, completed=s.shorts, prefetch=prefetch)


@PREFETCH
async def test_hard_stop_hands_every_running_job_back_at_once(prefetch: int) -> None:
    s = await scenario(grace_period=LONG_GRACE, visibility_timeout=30.0)
    worker = s.app.worker(concurrency=4, prefetch=prefetch)
    stats = WorkerStats()

    async def run() -> None:
        nonlocal stats
        stats = await worker.run()

    with anyio.fail_after(WAIT):  # far less than the grace period
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await s.all_started.wait()
            worker.stop(graceful=False)

    assert s.long_stopped == 2
    assert stats == WorkerStats(released=4 + prefetch)
    await assert_nothing_lost(s, completed=[], prefetch=prefetch)


@PREFETCH
async def test_a_second_stop_skips_the_grace_period(prefetch: int) -> None:
    s = await scenario(grace_period=LONG_GRACE)
    worker = s.app.worker(concurrency=4, prefetch=prefetch)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await s.all_started.wait()
            worker.stop()
            s.release.set()
            job = s.shorts[0]
            await s.app.result(job.id, timeout=WAIT)
            await s.app.result(s.shorts[1].id, timeout=WAIT)
            worker.stop()

    assert worker.stats == WorkerStats(completed=2, released=2 + prefetch)
    await assert_nothing_lost(s, completed=s.shorts, prefetch=prefetch)


@PREFETCH
async def test_leaving_the_embedded_worker_is_a_graceful_stop(prefetch: int) -> None:
    s = await scenario(grace_period=GRACE)

    with anyio.fail_after(WAIT):
        async with s.app.worker(concurrency=4, prefetch=prefetch) as worker:
            await s.all_started.wait()
            s.release.set()

    assert worker.stats == WorkerStats(completed=2, released=2 + prefetch)
    await assert_nothing_lost(s, completed=s.shorts, prefetch=prefetch)


async def test_stop_before_the_worker_starts_runs_nothing() -> None:
    s = await scenario()
    worker = s.app.worker(concurrency=4)
    worker.stop()

    with anyio.fail_after(WAIT):
        stats = await worker.run()

    assert stats == WorkerStats()
    assert s.started == 0
    await assert_nothing_lost(s, completed=[])


class SignalLog(logging.Handler):
    """Sets an event when the worker logs that it got a signal: the point where it has acted."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.news = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if " got SIG" in record.getMessage():
            self.seen.append(record.getMessage())
            self.news.set()

    async def next(self) -> str:
        await self.news.wait()
        self.news = anyio.Event()
        return self.seen[-1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@PREFETCH
async def test_a_signal_stops_gracefully_and_a_second_one_at_once(
    signum: signal.Signals, prefetch: int
) -> None:
    s = await scenario(grace_period=LONG_GRACE)
    worker = s.app.worker(concurrency=4, prefetch=prefetch)
    signals = SignalLog()
    logger = logging.getLogger("taskit.worker")
    logger.addHandler(signals)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: worker.run(handle_signals=True))
                await s.all_started.wait()  # the worker listens for signals before it runs jobs
                signal.raise_signal(signum)
                assert "stopping gracefully" in await signals.next()
                s.release.set()
                for job in s.shorts:
                    await s.app.result(job.id, timeout=WAIT)
                signal.raise_signal(signum)  # the grace period is 30 s: this one cuts it short
                assert "stopping now" in await signals.next()
    finally:
        logger.removeHandler(signals)
        logger.setLevel(level)

    assert worker.stats == WorkerStats(completed=2, released=2 + prefetch)
    await assert_nothing_lost(s, completed=s.shorts, prefetch=prefetch)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_worker_whose_broker_cannot_run_on_this_loop_stops_with_the_error() -> None:
    # redis-py runs on asyncio only: every call under trio raises ConfigurationError, which
    # the worker's loops used to retry as an outage, for ever (even with burst).
    from taskit import ConfigurationError
    from taskit.broker.redis import RedisBroker

    app = App(RedisBroker("redis://127.0.0.1:1/0"))
    with anyio.fail_after(WAIT), pytest.RaisesGroup(ConfigurationError, flatten_subgroups=True):
        await app.worker().run(burst=True)


@pytest.mark.parametrize("host", ["worker", "manager"])
async def test_an_embedded_worker_cancelled_from_outside_hands_its_jobs_back(host: str) -> None:
    # The host's cancel scope (a lifespan or task group torn down) cut the worker's stop short:
    # its running job stayed RUNNING, leased, until the lease expired, and then ran again with
    # an attempt spent. A cancelled host now gets the hard stop: the job goes back at once.
    from taskit import WorkerManager

    app = App(MemoryBroker(), settings=Settings(grace_period=LONG_GRACE, visibility_timeout=60))
    started = anyio.Event()

    @app.task(name="endless")
    async def endless() -> None:
        started.set()
        await anyio.sleep_forever()

    job = await endless.enqueue()
    with anyio.fail_after(WAIT):  # neither the grace period nor the lease is waited out
        with anyio.CancelScope() as host_scope:
            running = app.worker() if host == "worker" else WorkerManager(app, workers=1)
            async with running:
                await started.wait()
                host_scope.cancel()
                await anyio.sleep_forever()
    stored = await app.get_job(job.id)
    assert stored is not None
    assert stored.status is JobStatus.PENDING
    assert stored.attempts == 0
