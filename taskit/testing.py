"""Helpers for testing code that uses taskit: an in-memory harness, eager mode, a fake clock.

    from taskit.testing import Harness

    async def test_signup_sends_a_welcome_email():
        with Harness(app) as harness:            # app's broker is swapped for an in-memory one
            await signup("ada@example.com")       # your code enqueues jobs as usual
            assert [j.task for j in await harness.jobs()] == ["emails.welcome"]
            await harness.drain()                 # run every job, retries and schedules included
            assert outbox == ["ada@example.com"]

* ``Harness(app)`` swaps ``app.broker`` for a ``MemoryBroker`` on a ``FakeClock`` until the
  ``with`` block ends (then the original broker is back). Finished jobs never expire in it.
* ``await harness.drain()`` runs queued jobs one at a time, in this event loop, through the same
  executor a worker uses (same retries, timeouts, dead letters). When nothing is ready but jobs are
  scheduled or waiting to be retried, it moves the fake clock to the next due time, so a backoff of
  an hour or a job scheduled for next week runs at once, in order, without real waiting.
* ``Harness(app, eager=True)`` (or ``eager(app)``) drains at every enqueue: ``await
  task.enqueue(...)`` returns the job in its final state. A job enqueued by a running job is run by
  the same drain, after the current one.
* ``harness.clock`` is the ``FakeClock``; ``harness.advance(seconds)`` moves it without running
  anything.
* ``harness.reports[job_id]`` lists every ``taskit.report_progress`` a drained job made, in
  order; its last one is stored before the job settles, as a worker does (``Job.progress``,
  and a ``progress`` event for the App's subscribers).

With pytest, the ``taskit_harness`` fixture (``taskit.pytest_plugin``, loaded automatically when
taskit is installed) opens harnesses and closes them at the end of the test:
``harness = taskit_harness(app, eager=True)``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio

from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.clock import FakeClock
from taskit.events import EventKind
from taskit.execution import Executor, RunningJob
from taskit.job import (
    Job,
    JobStatus,
    Outcome,
    OutcomeKind,
    Progress,
    ProgressUpdate,
    utc_from_timestamp,
)
from taskit.progress import Reporter
from taskit.worker import WorkerStats

if TYPE_CHECKING:
    from taskit.app import App

__all__ = ["DrainError", "FakeClock", "Harness", "eager"]

#: ``drain()`` gives up after running this many jobs (a job that re-enqueues itself forever).
MAX_JOBS = 10_000


class DrainError(RuntimeError):
    """``drain()`` ran ``max_jobs`` jobs and the queues were still not empty."""


class _HarnessBroker(MemoryBroker):
    """A MemoryBroker that remembers what was enqueued, tells the next due time, and (eager)
    drains after each enqueue."""

    def __init__(self, harness: Harness, clock: FakeClock) -> None:
        super().__init__(clock=clock, result_ttl=math.inf)
        self._harness = harness
        self.enqueued: dict[str, None] = {}

    async def enqueue(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job]:
        stored = await super().enqueue(jobs, delays=delays)
        self.enqueued.update(dict.fromkeys(job.id for job in stored))
        harness = self._harness
        if not harness.eager or harness.draining:
            return stored
        await harness.drain()
        return [await self.get(job.id) or job for job in stored]

    def next_due(self) -> float | None:
        """The earliest due time of a scheduled or retrying job (possibly of one since settled
        or removed: moving the clock there is harmless), or ``None``."""
        with self._lock:
            return self._delayed[0][0] if self._delayed else None


class Harness:
    """An in-memory stand-in for ``app``'s broker, with ``drain()`` and a fake clock.

    ``clock`` defaults to a ``FakeClock`` at the current time. Use as a context manager (``with``
    or ``async with``); entering twice, or two harnesses on one App at once, is not supported.
    """

    def __init__(self, app: App, *, eager: bool = False, clock: FakeClock | None = None) -> None:
        self.app = app
        self.eager = eager
        self.clock = clock if clock is not None else FakeClock(time.time())
        self.broker = _HarnessBroker(self, self.clock)
        self.draining = False
        #: Every progress report of the jobs drained, by job id, in the order made.
        self.reports: defaultdict[str, list[Progress]] = defaultdict(list)
        self._saved: tuple[Broker, str] | None = None

    def __enter__(self) -> Self:
        if self._saved is not None:
            raise RuntimeError("this Harness is already in use")
        self._saved = (self.app.broker, self.app.broker_url)
        self.app.broker, self.app.broker_url = self.broker, "memory:// (taskit.testing)"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saved is not None:
            self.app.broker, self.app.broker_url = self._saved
            self._saved = None

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    async def drain(
        self, queues: Sequence[str] | None = None, *, max_jobs: int = MAX_JOBS
    ) -> WorkerStats:
        """Run jobs until nothing is left to run (nothing ready, scheduled or retrying in
        ``queues``, default every queue), moving the fake clock to each next due time; returns
        the counts by outcome. Jobs run one at a time, highest priority first, queues in the order
        given (default: by name). Raises ``DrainError`` after ``max_jobs`` jobs and
        ``RuntimeError`` if called while draining (from inside a job)."""
        if self.draining:
            raise RuntimeError("drain() called while draining (from inside a job?)")
        self.draining = True
        try:
            return await self._drain(queues, max_jobs)
        finally:
            self.draining = False

    async def _drain(self, queues: Sequence[str] | None, max_jobs: int) -> WorkerStats:
        settings = self.app.settings
        executor = Executor(
            self.app.tasks,
            anyio.CapacityLimiter(settings.sync_concurrency),
            self.clock,
            broker=self.broker,
        )
        stats = WorkerStats()
        ran = 0
        while True:
            names = list(queues) if queues is not None else sorted(await self.broker.stats())
            leases = await self.broker.reserve(
                names, count=1, lease=settings.visibility_timeout, timeout=0
            )
            if not leases:
                due = self.broker.next_due()
                if due is None or not math.isfinite(due):
                    return stats
                # reserve() promoted everything due by now, so this moves the clock forward
                self.clock.set(max(due, self.clock.time()))
                continue
            if ran >= max_jobs:
                lease = leases[0]
                await self.broker.settle(
                    [Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.RELEASE)]
                )
                raise DrainError(f"drain() ran {ran} jobs and the queues are still not empty")
            running = RunningJob(leases[0])
            running.reporter.listener = self._reported
            outcome = await executor.execute(running)
            if outcome is not None:
                await self._store_progress(running.reporter)
                await self.broker.settle([outcome])
            stats.count(outcome.kind if outcome else None)
            ran += 1

    def _reported(self, job: Job, progress: Progress) -> None:
        self.reports[job.id].append(progress)

    async def _store_progress(self, reporter: Reporter) -> None:
        """The job's last report, stored and announced as a worker's flush does."""
        progress = reporter.unsent
        if progress is None:
            return
        reporter.sent = progress
        update = ProgressUpdate(reporter.job.id, reporter.token, progress)
        if (await self.broker.set_progress([update]))[0] and self.app.events:
            await self.app.events.job(EventKind.PROGRESS, reporter.job, progress=progress)

    def drain_sync(
        self, queues: Sequence[str] | None = None, *, max_jobs: int = MAX_JOBS
    ) -> WorkerStats:
        """``drain`` for tests without an event loop (runs on the App's sync-bridge loop)."""
        return self.app.run_sync(lambda: self.drain(queues, max_jobs=max_jobs))

    def now(self) -> datetime:
        """The fake clock's time as an aware UTC datetime (for ``scheduled_at``)."""
        return utc_from_timestamp(self.clock.time())

    def advance(self, seconds: float) -> float:
        """Move the fake clock forward by ``seconds`` (runs nothing); returns the new time."""
        return self.clock.advance(seconds)

    async def jobs(self, *, task: str | None = None, status: JobStatus | None = None) -> list[Job]:
        """Every job enqueued while this harness was active, oldest first, as now stored;
        filtered by task name and status when given."""
        found = []
        for job_id in list(self.broker.enqueued):
            job = await self.broker.get(job_id)
            if job is None or (task is not None and job.task != task):
                continue
            if status is None or job.status is status:
                found.append(job)
        return found


def eager(app: App, *, clock: FakeClock | None = None) -> Harness:
    """``Harness(app, eager=True)``: every enqueue runs its job (and what it enqueues) inline."""
    return Harness(app, eager=True, clock=clock)
