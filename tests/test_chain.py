"""A worker that holds one job at a time on SQLite or memory runs ``def`` jobs in chains
(``taskit._chain``): the handler thread settles each job and takes the next in one step of its
own (``Broker.settle_and_reserve_now``), while the event loop keeps leases, timeouts and stops.
Each test runs on both brokers, but those of SQLite's own (its write lock, its rows).
Each promise of the loop's path holds there too: timeouts (one per job, a sooner one waking the
loop's timer), cancels and stops taken from the thread, ``on_failure`` hooks and progress, a
held write lock (the loop settles instead), ``async def`` jobs between ``def`` ones, and
nothing lost or counted twice."""

from __future__ import annotations

import contextvars
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from taskit import App, Job, JobStatus, Settings, Worker, _chain, report_progress
from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.broker.sqlite import SqliteBroker
from taskit.errors import JobTimeoutError
from taskit.execution import Executor, Prepared, RunningJob
from taskit.job import Lease, Outcome

pytestmark = pytest.mark.anyio

WAIT = 15.0


class Counting(Broker):
    """Put first in a broker's bases: its steps taken from a thread
    (``settle_and_reserve_now``), how many leases each took, and how many could not be done
    at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now_steps: list[int] = []
        self.refused = 0

    def settle_and_reserve_now(
        self, outcomes: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
    ) -> tuple[list[bool], list[Lease]] | None:
        done = super().settle_and_reserve_now(outcomes, queues, count=count, lease=lease)
        if done is None:
            self.refused += 1
        else:
            self.now_steps.append(len(done[1]))
        return done


class Counted(Counting, SqliteBroker):
    """A SQLite broker counting its steps taken from a thread."""


class CountedMemory(Counting, MemoryBroker):
    """The memory broker counting its steps taken from a thread."""


@pytest.fixture(params=["sqlite", "memory"])
def kind(request: pytest.FixtureRequest) -> str:
    """The broker a test's chains run on (both have ``settle_and_reserve_now``)."""
    return str(request.param)


def make_app(
    tmp_path: Path, kind: str = "sqlite", **settings: object
) -> tuple[App, Counted | CountedMemory]:
    broker = Counted(tmp_path / "jobs.db") if kind == "sqlite" else CountedMemory()
    options: dict[str, object] = {"grace_period": 30.0, "backoff": 0.0}
    options.update(settings)
    return App(broker, settings=Settings(**options)), broker  # type: ignore[arg-type]


async def status(app: App, job: Job) -> tuple[JobStatus, int]:
    stored = await app.get_job(job.id)
    assert stored is not None
    return stored.status, stored.attempts


class Blocking:
    """A ``def`` task whose job ``n == 1`` blocks until ``release`` (``running`` once it does),
    and whose job ``n == 2`` sets ``last``."""

    def __init__(self, app: App) -> None:
        self.running, self.release, self.last = (threading.Event() for _ in range(3))

        @app.task
        def wait(n: int) -> int:
            if n == 1:
                self.running.set()
                self.release.wait(WAIT)
            if n == 2:
                self.last.set()
            return n

        self.task = wait

    async def while_running(self, worker: Worker, act: Callable[[], Awaitable[None]]) -> None:
        """Run ``worker`` until it stops; ``act()`` once job 1 runs. Job 1 is released after."""
        try:
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(worker.run)
                    await anyio.to_thread.run_sync(self.running.wait, WAIT)
                    await act()
        finally:
            self.release.set()


async def drain(app: App) -> Worker:
    worker = Worker(app, concurrency=1)
    with anyio.fail_after(WAIT):
        await worker.run(burst=True)
    return worker


async def test_def_jobs_run_in_one_thread_each_settled_with_the_next_taken(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, broker = make_app(tmp_path, kind)
    threads: list[int] = []

    @app.task
    def double(n: int) -> int:
        threads.append(threading.get_ident())
        return n * 2

    jobs = [await double.enqueue(n) for n in range(8)]
    with caplog.at_level(logging.INFO, logger="taskit.worker"):
        worker = await drain(app)

    assert worker.stats.completed == 8
    assert worker.stats.jobs_done == 8
    # The first job came from the fetcher; each job's step in the thread took the next (the
    # last found none). A step that could not be done at once (the worker's first calls held
    # the write lock, or the store's thread had calls queued) was the loop's.
    steps = broker.now_steps
    assert steps[-1] == 0
    assert steps[:-1] == [1] * (len(steps) - 1)
    assert len(steps) + broker.refused == 8
    assert len(steps) >= 6
    assert threading.get_ident() not in threads
    for n, job in enumerate(jobs):
        assert await status(app, job) == (JobStatus.COMPLETED, 1)
        assert (await app.result(job.id, timeout=1)).value == n * 2
    ended = [r for r in caplog.records if "complete in" in r.getMessage()]
    assert sorted(r.job_id for r in ended) == sorted(j.id for j in jobs)  # type: ignore[attr-defined]
    await app.close()


async def test_async_and_def_jobs_mixed_all_run_once(tmp_path: Path, kind: str) -> None:
    app, broker = make_app(tmp_path, kind)
    ran: list[str] = []

    @app.task
    def sync_note(n: int) -> None:
        ran.append(f"def{n}")

    @app.task
    async def async_note(n: int) -> None:
        ran.append(f"async{n}")

    for n in range(6):
        await (sync_note if n % 3 else async_note).enqueue(n)
    worker = await drain(app)

    assert ran == ["async0", "def1", "def2", "async3", "def4", "def5"]
    assert worker.stats.completed == 6
    assert broker.now_steps  # the def jobs' steps were the thread's
    await app.close()


async def test_a_job_past_its_timeout_is_taken_from_the_chain_and_retried(
    tmp_path: Path,
    kind: str,
) -> None:
    app, _ = make_app(tmp_path, kind)
    release = threading.Event()

    @app.task(timeout=30.0)
    def quick(n: int) -> int:
        return n

    @app.task(timeout=0.3, max_retries=0)
    def stuck() -> None:
        release.wait(WAIT)

    first = await quick.enqueue(1)
    late = await stuck.enqueue()  # second in the chain: its sooner deadline wakes the timer
    after = await quick.enqueue(2)
    began = time.monotonic()
    try:
        worker = await drain(app)
    finally:
        release.set()

    # Taken at its own deadline, not at the 30 s one the timer waited for before it.
    assert time.monotonic() - began < 10.0
    assert await status(app, first) == (JobStatus.COMPLETED, 1)
    assert await status(app, after) == (JobStatus.COMPLETED, 1)
    stored = await app.get_job(late.id)
    assert stored is not None
    assert stored.status is JobStatus.DEAD_LETTER
    assert stored.error_type == JobTimeoutError.__name__
    assert worker.stats.completed == 2
    assert worker.stats.dead_lettered == 1
    await app.close()


async def test_on_failure_hooks_and_retries_of_a_chained_job(tmp_path: Path, kind: str) -> None:
    app, _ = make_app(tmp_path, kind)
    told: list[str] = []
    tries: list[int] = []

    def hook(job: Job, error: BaseException) -> None:
        told.append(f"{job.attempts}:{error}")

    @app.task(max_retries=1, on_failure=hook)
    def flaky(n: int) -> int:
        tries.append(n)
        if len(tries) == 2:
            raise ValueError("second call fails")
        return n

    jobs = [await flaky.enqueue(n) for n in range(3)]
    worker = await drain(app)

    assert told == ["1:second call fails"]  # once, for the one failure
    assert sorted(tries) == [0, 1, 1, 2]  # job 1 ran again after its retry
    for job in jobs:
        assert await status(app, job) == (JobStatus.COMPLETED, 1 + (job is jobs[1]))
    assert (worker.stats.completed, worker.stats.retried) == (3, 1)
    await app.close()


async def test_progress_reported_in_a_chain_is_stored_before_the_settle(
    tmp_path: Path, kind: str
) -> None:
    app, _ = make_app(tmp_path, kind)

    @app.task
    def steps(n: int) -> int:
        report_progress(n / 10, done=n)
        return n

    jobs = [await steps.enqueue(n) for n in range(3)]
    await drain(app)

    for n, job in enumerate(jobs):
        stored = await app.get_job(job.id)
        assert stored is not None
        assert stored.status is JobStatus.COMPLETED
        assert stored.progress is not None
        assert (stored.progress.fraction, stored.progress.data) == (n / 10, {"done": n})
    await app.close()


async def test_a_held_write_lock_sends_the_settle_to_the_loop_and_loses_nothing(
    tmp_path: Path,
) -> None:
    app, broker = make_app(tmp_path)
    holder = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None, check_same_thread=False)
    held = threading.Event()
    ran: list[int] = []

    @app.task
    def note(n: int) -> None:
        ran.append(n)
        if n == 1:  # the second job's step meets another connection's write lock
            holder.execute("BEGIN IMMEDIATE")
            held.set()

    async def let_go() -> None:
        await anyio.to_thread.run_sync(held.wait, WAIT)
        await anyio.sleep(0.2)
        holder.execute("COMMIT")

    jobs = [await note.enqueue(n) for n in range(5)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(let_go)
        worker = await drain(app)
    holder.close()

    assert ran == [0, 1, 2, 3, 4]
    assert broker.refused >= 1
    assert worker.stats.completed == 5
    for job in jobs:
        assert await status(app, job) == (JobStatus.COMPLETED, 1)
    await app.close()


async def test_a_cancel_requested_while_a_chained_job_runs_cancels_it(
    tmp_path: Path, kind: str
) -> None:
    app, _ = make_app(tmp_path, kind, visibility_timeout=1.5)  # the heartbeat: every 0.5 s
    blocking = Blocking(app)
    jobs = [await blocking.task.enqueue(n) for n in range(3)]
    worker = Worker(app, concurrency=1)

    async def cancel() -> None:
        assert await app.cancel(jobs[1].id)
        await anyio.to_thread.run_sync(blocking.last.wait, WAIT)  # it went on past the cancel
        worker.stop()

    await blocking.while_running(worker, cancel)

    assert (await status(app, jobs[1]))[0] is JobStatus.CANCELLED
    assert (await status(app, jobs[0]))[0] is JobStatus.COMPLETED
    assert (await status(app, jobs[2]))[0] is JobStatus.COMPLETED
    assert (worker.stats.completed, worker.stats.cancelled) == (2, 1)
    await app.close()


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful", "hard"])
async def test_a_stop_during_a_chained_job_loses_nothing(
    tmp_path: Path, kind: str, graceful: bool
) -> None:
    app, _ = make_app(tmp_path, kind)
    blocking = Blocking(app)
    jobs = [await blocking.task.enqueue(n) for n in range(4)]
    worker = Worker(app, concurrency=1)

    async def stop() -> None:
        worker.stop(graceful=graceful)
        if graceful:
            blocking.release.set()  # it finishes within the grace period

    await blocking.while_running(worker, stop)

    assert await status(app, jobs[0]) == (JobStatus.COMPLETED, 1)
    if graceful:
        assert await status(app, jobs[1]) == (JobStatus.COMPLETED, 1)
        assert (worker.stats.completed, worker.stats.released) == (2, 0)
    else:  # handed back at once, its attempt refunded; its thread ran on, dropped
        assert await status(app, jobs[1]) == (JobStatus.PENDING, 0)
        assert (worker.stats.completed, worker.stats.released) == (1, 1)
    for job in jobs[2:]:  # never taken
        assert await status(app, job) == (JobStatus.PENDING, 0)
    await app.close()


async def test_event_subscribers_keep_def_jobs_on_the_loop(tmp_path: Path, kind: str) -> None:
    app, broker = make_app(tmp_path, kind)
    seen: list[str] = []
    app.on("completed")(lambda event: seen.append(event.job_id))

    @app.task
    def note(n: int) -> int:
        return n

    jobs = [await note.enqueue(n) for n in range(3)]
    worker = await drain(app)

    assert broker.now_steps == []  # each job's events are the loop's to send
    assert worker.stats.completed == 3
    assert sorted(seen) == sorted(job.id for job in jobs)
    await app.close()


async def test_a_cancelled_chained_job_keeps_its_result_ttl(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, visibility_timeout=1.5)  # the heartbeat: every 0.5 s
    running, release = threading.Event(), threading.Event()

    @app.task(result_ttl=7.0)
    def work() -> None:
        running.set()
        release.wait(WAIT)

    job = await work.enqueue()
    worker = Worker(app, concurrency=1)
    try:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await anyio.to_thread.run_sync(running.wait, WAIT)
                assert await app.cancel(job.id)
                worker.stop()  # graceful: the heartbeat finds the cancel while it waits
    finally:
        release.set()
    assert worker.stats.cancelled == 1
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        status, kept = conn.execute(
            "SELECT status, expires - completed FROM jobs WHERE id = ?", (job.id,)
        ).fetchone()
    assert status == "cancelled"
    assert kept == pytest.approx(7.0)  # the job's own, not the broker's default
    await app.close()


TAG: contextvars.ContextVar[str | None] = contextvars.ContextVar("tag", default=None)


async def test_what_one_chained_handler_sets_in_its_context_the_next_does_not_see(
    tmp_path: Path,
    kind: str,
) -> None:
    app, broker = make_app(tmp_path, kind)
    seen: list[tuple[int, str | None]] = []

    @app.task
    def tag(n: int) -> None:
        seen.append((n, TAG.get()))
        TAG.set(f"set by job {n}")

    for n in range(3):
        await tag.enqueue(n)
    await drain(app)

    assert broker.now_steps  # a chain ran them
    assert seen == [(0, None), (1, None), (2, None)]
    await app.close()


async def test_a_job_taken_before_a_graceful_stop_is_handed_back_unrun(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop lands between the step that took the next job and its start (forced: from
    inside ``prepare_sync``, in the chain's thread): that job is handed back, not run."""
    app, _ = make_app(tmp_path, kind)
    ran: list[int] = []
    worker = Worker(app, concurrency=1)

    @app.task
    def note(n: int) -> None:
        ran.append(n)

    jobs = [await note.enqueue(n) for n in range(4)]
    prepare = Executor.prepare_sync
    token = anyio.lowlevel.current_token()

    def stop_after_two(executor: Executor, running: RunningJob) -> Prepared | None:
        prepared = prepare(executor, running)
        if len(ran) == 2 and not worker._stopping.is_set():
            anyio.from_thread.run_sync(worker.stop, token=token)  # graceful, on the loop
        return prepared

    monkeypatch.setattr(Executor, "prepare_sync", stop_after_two)
    with anyio.fail_after(WAIT):
        await worker.run()

    assert ran == [0, 1]
    assert [await status(app, job) for job in jobs] == [
        (JobStatus.COMPLETED, 1),
        (JobStatus.COMPLETED, 1),
        (JobStatus.PENDING, 0),  # taken with job 1's settle, handed back: attempt refunded
        (JobStatus.PENDING, 0),
    ]
    await app.close()


async def test_a_worker_cancelled_from_outside_during_a_step_hands_back_what_it_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while the chain's thread settles a job and takes the next (forced: the step,
    done, waits until the loop has left the chain): the settled job is counted, the one taken
    handed back, not left leased to nobody."""
    scopes: list[anyio.CancelScope] = []
    token = anyio.lowlevel.current_token()
    left = threading.Event()
    hand_back_left = _chain._Run._hand_back_left

    async def leaving(run: _chain._Run) -> None:
        left.set()  # the loop left the chain: it now waits for the thread between two jobs
        await hand_back_left(run)

    monkeypatch.setattr(_chain._Run, "_hand_back_left", leaving)

    class Cancelling(Counted):
        def settle_and_reserve_now(
            self, outcomes: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
        ) -> tuple[list[bool], list[Lease]] | None:
            done = super().settle_and_reserve_now(outcomes, queues, count=count, lease=lease)
            if done is not None and scopes:  # done: its commit took the next job
                anyio.from_thread.run_sync(scopes.pop().cancel, token=token)
                assert left.wait(WAIT)
            return done

    broker = Cancelling(tmp_path / "jobs.db")
    app = App(broker, settings=Settings(visibility_timeout=60.0))

    @app.task
    def note(n: int) -> None:
        pass

    jobs = [await note.enqueue(n) for n in range(3)]
    worker = Worker(app, concurrency=1)
    with anyio.fail_after(WAIT), anyio.CancelScope() as scope:
        scopes.append(scope)
        await worker.run()

    assert broker.now_steps[-1] == 1  # the step the cancel came in took a job
    done = worker.stats.completed  # the jobs before it (the first may have been the loop's)
    assert done >= 1
    assert worker.stats.released == 1  # the one it took, handed back unrun
    assert [await status(app, job) for job in jobs] == (
        [(JobStatus.COMPLETED, 1)] * done + [(JobStatus.PENDING, 0)] * (len(jobs) - done)
    )
    await app.close()


async def test_the_loop_lists_running_jobs_while_a_chain_changes_them(
    tmp_path: Path, kind: str
) -> None:
    """The progress flusher's and the presence record's lists of running jobs, read on the
    loop as often as it can while a chain's thread adds and removes jobs (the GIL switched
    often): a snapshot each time, never an error."""
    app, _ = make_app(tmp_path, kind)

    @app.task
    def noop(n: int) -> int:
        return n

    for n in range(300):
        await noop.enqueue(n)
    worker = Worker(app, concurrency=1)
    errors: list[BaseException] = []

    async def read() -> None:
        while True:
            try:
                worker._reporters()
                worker.running_jobs()
            except RuntimeError as exc:  # dictionary changed size during iteration
                errors.append(exc)
            await anyio.lowlevel.checkpoint()

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await worker.run(burst=True)
                tg.cancel_scope.cancel()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    assert worker.stats.completed == 300
    await app.close()


class Queued:
    """With one handler thread (``sync_concurrency=1``): job ``stuck`` times out and its
    handler runs on in the thread, abandoned, until ``release``; the chain of job ``quick``,
    next, then waits for that thread (``listed`` once the worker lists it as running)."""

    def __init__(self, tmp_path: Path, kind: str, **settings: object) -> None:
        self.app, _ = make_app(tmp_path, kind, sync_concurrency=1, **settings)
        self.release, self.quick_ran = threading.Event(), threading.Event()
        self.runs: list[str] = []

        @self.app.task(timeout=0.2, max_retries=0)
        def stuck() -> None:
            self.runs.append("stuck")
            self.release.wait(WAIT)

        @self.app.task
        def quick() -> None:
            self.runs.append("quick")
            self.quick_ran.set()

        self.stuck, self.quick = stuck, quick

    async def listed(self, worker: Worker) -> None:
        """Until the worker lists ``quick`` as running (its chain's call queued)."""
        # The worker's state is only polled: nothing signals a call that waits for a thread.
        while not any(r.task == self.quick.name for r in worker.running_jobs()):  # noqa: ASYNC110
            await anyio.sleep(0.01)


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful", "hard"])
async def test_a_stop_reaches_a_chained_job_waiting_for_a_thread(
    tmp_path: Path, kind: str, graceful: bool
) -> None:
    """Listed as running while its chain's call waits for a thread, the job is stopped by a
    stop like any job: handed back unrun at once by a hard stop, and, by a graceful one, at
    the end of the grace period (it has not started), never waiting for the busy thread."""
    queued = Queued(tmp_path, kind, grace_period=0.3)
    await queued.stuck.enqueue()
    quick = await queued.quick.enqueue()
    worker = Worker(queued.app, concurrency=1)
    try:
        with anyio.fail_after(WAIT / 2):  # the stuck handler is released only after this
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await queued.listed(worker)
                worker.stop(graceful=graceful)
    finally:
        queued.release.set()

    assert queued.runs == ["stuck"]
    assert await status(queued.app, quick) == (JobStatus.PENDING, 0)  # attempt refunded
    assert worker.stats.released == 1
    await queued.app.close()


async def test_a_worker_cancelled_while_a_chain_waits_for_a_thread_hands_its_job_back(
    tmp_path: Path, kind: str
) -> None:
    queued = Queued(tmp_path, kind)
    await queued.stuck.enqueue()
    quick = await queued.quick.enqueue()
    worker = Worker(queued.app, concurrency=1)
    try:
        with anyio.fail_after(WAIT / 2):  # a wait for the thread that never takes the call
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await queued.listed(worker)
                tg.cancel_scope.cancel()
    finally:
        queued.release.set()

    assert queued.runs == ["stuck"]
    assert await status(queued.app, quick) == (JobStatus.PENDING, 0)
    await queued.app.close()


async def test_the_lease_of_a_chained_job_waiting_for_a_thread_is_kept(
    tmp_path: Path, kind: str
) -> None:
    """Its lease (0.6 s) would run out twice over while the call waits; the heartbeat keeps
    it, so the reaper leaves it alone and it runs once."""
    queued = Queued(tmp_path, kind, visibility_timeout=0.6, reaper_interval=0.2)
    await queued.stuck.enqueue()
    quick = await queued.quick.enqueue()
    worker = Worker(queued.app, concurrency=1)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await queued.listed(worker)
            await anyio.sleep(1.5)  # lease expiry is what is tested: real time must pass
            queued.release.set()
            await anyio.to_thread.run_sync(queued.quick_ran.wait, WAIT)
            worker.stop()

    assert queued.runs == ["stuck", "quick"]
    assert await status(queued.app, quick) == (JobStatus.COMPLETED, 1)
    assert (worker.stats.completed, worker.stats.lost) == (1, 0)
    await queued.app.close()
