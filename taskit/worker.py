"""The worker: reserves jobs, runs them on a fixed pool of runners, keeps their leases alive,
reclaims expired ones, and shuts down without losing anything.

Inside one anyio task group:

* the **fetcher** reserves as many jobs as there are idle runners, plus up to ``prefetch`` more
  held waiting (blocking in the broker while there is nothing to do, so a new job starts at
  once) and hands them to the runners (``taskit._handoff``). With a job waiting, a runner that
  finishes one starts the next at once instead of after a reserve, and the reserve that refills
  the buffer goes to the broker beside the finished job's settle. A worker that holds one job
  at a time (concurrency 1, prefetch 0) has its runner reserve the next job itself, as long as
  one is ready at once: the same reserve, without a round of wake-ups between two tasks a job;
* ``concurrency`` **runners** each run one job at a time (``taskit.execution``) and settle it;
* the **heartbeat** extends every lease the worker holds (running or waiting) each third of the
  visibility timeout, and stops jobs whose lease was lost or whose cancel was requested (a
  waiting one is settled at once, unrun: CANCEL, or dropped for a lost lease);
* the **reaper** reclaims leases that expired on dead workers and retries or dead-letters them
  (these two: ``taskit._leases``);
* the **announcer** keeps the worker's record in the broker (``taskit.presence``).

A worker takes only what it runs on (``WorkerParts``: the broker, the tasks by name, the
settings, the event subscribers, the hooks), not the App: ``App.worker`` builds it from the App's
parts, and a test builds one without any App. ``Worker(app, ...)`` works too (an App has those
parts).

Shutdown (``stop()``, SIGTERM or SIGINT): the fetcher (and a runner's own reserve) is cancelled
at once, wherever it waits (a cancelled reserve raises and hands back anything it took in that
moment, see ``Broker.reserve``), so nothing is reserved after the stop; jobs waiting for a runner
are handed back at once (RELEASE: the attempt refunded), not run; running jobs may finish until
the grace period, counted from the stop, runs out; then the rest are stopped and handed back to
the queue at once. A second signal (or ``stop(graceful=False)``) ends the grace period there.
Either way nothing is lost. Every loop that talks to the broker waits out a failure with a
capped, jittered backoff and logs it once per outage (``taskit._outage``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import anyio.abc

from taskit._chain import Chain, End, Ending
from taskit._declare_limits import declare_limits
from taskit._handoff import Handoff
from taskit._leases import Reaper, keep_leases
from taskit._ledger import Ledger, extra
from taskit._outage import Outage
from taskit._settler import Settler, Taking
from taskit._threads import HandlerThreads
from taskit._worker_parts import WorkerParts, WorkerSource, WorkerStats
from taskit.backoff import as_policy
from taskit.broker.base import Broker
from taskit.config import check_number
from taskit.errors import BrokerAuthenticationError, ConfigurationError, TaskitError
from taskit.events import WorkerEvents
from taskit.execution import Executor, Prepared, RunningJob, StopReason, stopped_outcome
from taskit.hooks import Attempt, Hooks
from taskit.job import Lease, Outcome, OutcomeKind
from taskit.limits import LimitSpec
from taskit.presence import RunningJob as ListedJob
from taskit.presence import announce
from taskit.progress import ProgressFlusher, Reporter

if TYPE_CHECKING:
    pass

__all__ = ["Worker", "WorkerParts", "WorkerSource", "WorkerStats"]

log = logging.getLogger(__name__)

#: Longest single blocking reserve; the fetcher then loops (and notices a stop at once anyway).
BLOCK_SECONDS = 5.0
#: In burst mode, how long a reserve waits before checking whether the queues are empty.
BURST_TICK = 0.05
#: How long a stopping worker keeps trying to settle after its grace period (a broker outage).
SETTLE_AFTER_GRACE = 1.0
#: Errors that waiting does not heal (refused credentials, a broker that cannot run on this event
#: loop): the worker stops with them instead of retrying.
_FATAL = (BrokerAuthenticationError, ConfigurationError)


class Worker:
    """Runs the jobs of ``parts`` (a ``WorkerParts``, or an ``App``) from ``queues`` (in that
    order of preference) with ``concurrency`` jobs at a time. Use ``await worker.run()``, or
    ``async with worker:`` to run it in the background of an application (its exit stops the
    worker gracefully). The parts are read once, here: a worker keeps the broker it was built
    with.

    ``prefetch`` (default: the settings'): how many reserved jobs the worker may hold waiting
    beyond its idle runners, so that a runner that finishes one starts the next without a
    round trip to the broker; 0 reserves only for idle runners. Waiting jobs are leased (the
    heartbeat keeps them) but not listed as running; a stop hands them back unrun.

    ``concurrency`` (default: the settings') must be an int >= 1 (``True`` is not one),
    ``prefetch`` an int >= 0, ``name`` a non-empty string: anything else raises
    ``ConfigurationError`` / ``ValueError`` naming the argument, here rather than when the
    worker runs."""

    def __init__(
        self,
        parts: WorkerSource,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        name: str | None = None,
        prefetch: int | None = None,
    ) -> None:
        settings = self.settings = parts.settings
        self.broker = parts.broker
        self.broker_url = parts.broker_url
        self.tasks = parts.tasks
        self.events = parts.events
        # Read leniently: a source shaped before hooks existed has none (no hooks).
        self.hooks: Hooks | None = getattr(parts, "hooks", None)
        self.limits: Mapping[str, LimitSpec] = getattr(parts, "limits", None) or {}
        if isinstance(queues, str | bytes):  # a str is a sequence: "emails" was 6 queues
            raise ValueError(f"queues must be a list of names, got the string {queues!r}")
        self.queues = list(queues) if queues else [settings.default_queue]
        if not all(isinstance(q, str) and q.strip() for q in self.queues):
            raise ValueError(f"queues must be non-empty names, got {self.queues!r}")
        if concurrency is not None:  # held to the setting's rule: an int (not a bool), >= 1
            check_number("concurrency", concurrency)
        self.concurrency = concurrency if concurrency is not None else settings.concurrency
        if prefetch is not None:  # held to the setting's rule: an int (not a bool), >= 0
            check_number("prefetch", prefetch)
        self.prefetch = prefetch if prefetch is not None else settings.prefetch
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name or f"{socket.gethostname()}.{os.getpid()}"
        self.lease = settings.visibility_timeout
        self.grace = settings.grace_period
        self.reaper_interval = settings.reaper_interval
        self.progress_interval = settings.progress_interval
        self.stats = WorkerStats()
        # By lease token, not job id: after a lease is lost unseen, one job can run twice here.
        self._running: dict[str, RunningJob] = {}
        # The outcomes on their way to the broker, and what is done once each has landed.
        self._ledger = Ledger(self.stats, log)
        self._events: WorkerEvents | None = None
        self._handoff: Handoff | None = None  # while serving: the jobs waiting for a runner
        self._busy = 0  # jobs held: running, or reserved and waiting for a runner
        self._stopping = anyio.Event()
        self._stopped_at: float | None = None  # anyio clock: the grace period counts from here
        self._hard = False
        self._fetching: anyio.CancelScope | None = None  # the fetcher's scope, while it runs
        # A worker that holds one job at a time: its runner reserves the next job itself.
        self._holds_one = self.concurrency + self.prefetch == 1
        self._reserving: anyio.CancelScope | None = None  # the runner's, while it reserves
        self._slot_free = anyio.Event()
        self._drained = anyio.Event()
        self._runners_left = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._executor: Executor | None = None
        self._chain: Chain | None = None  # runs ``def`` jobs in a thread of their own (_run)

    # -- public ------------------------------------------------------------------------------
    async def run(self, *, burst: bool = False, handle_signals: bool = False) -> WorkerStats:
        """Run until ``stop()`` (or, with ``burst``, until the queues are empty: nothing ready,
        scheduled, retrying or running). ``handle_signals``: SIGTERM/SIGINT stop the worker
        (main thread only). Returns what this run did."""
        async with anyio.create_task_group() as watch:
            if handle_signals:  # to the very end: a second signal in the last steps still counts
                await watch.start(self._watch_signals)
            await self._run(burst)
            watch.cancel_scope.cancel()
        return self.stats

    async def _run(self, burst: bool) -> None:
        settings, broker = self.settings, self.broker
        limiter = anyio.CapacityLimiter(settings.sync_concurrency)
        threads = HandlerThreads(settings.sync_concurrency)
        try:
            executor = self._executor = Executor(
                self.tasks, limiter, broker=broker, threads=threads
            )
            if self._holds_one and not self.events and not self.hooks and _steps_now(broker):
                # No event or hook to call on the loop a job: ``def`` jobs may run in chains.
                self._chain = Chain(
                    broker, executor, threads, queues=self.queues, lease=self.lease,
                    running=self._running, record=self._ledger.chained,
                    stopping=self._stopping.is_set, hard=lambda: self._hard,
                    hand_back=self._hand_back,
                )  # fmt: skip
            await self._serve(executor, burst)
        finally:
            threads.close()  # idle threads exit; one still running a handler was abandoned

    async def _serve(self, executor: Executor, burst: bool) -> None:
        settings, broker = self.settings, self.broker
        settler = self._settler = Settler(
            broker, self.lease, self._ledger.settled, self._ledger.lines.write
        )
        handoff = self._handoff = Handoff()
        events = WorkerEvents(self.events, self.name) if self.events else None
        self._events = self._ledger.events = events
        async with anyio.create_task_group() as services:
            log.info(
                "worker %s starting: queues=%s concurrency=%d broker=%s prefetch=%d",
                self.name, ",".join(self.queues), self.concurrency, self.broker_url,
                self.prefetch,
            )  # fmt: skip
            services.start_soon(
                keep_leases, broker, self._jobs_held, self.lease, self._settle_stopped_waiting
            )
            reaper = Reaper(
                broker, self.tasks, self.queues, lease=self.lease, interval=self.reaper_interval,
                backoff=as_policy(settings.backoff), events=events,
            )  # fmt: skip
            services.start_soon(reaper.run)
            services.start_soon(announce, self, broker, settings.heartbeat_interval)
            on_stored = events.progress if events else None
            progress = self._progress = ProgressFlusher(broker, self.progress_interval, on_stored)
            services.start_soon(progress.run, self._reporters)
            if events:
                services.start_soon(events.run)
            settled = anyio.Event()
            services.start_soon(_set_after, settler.run, settled)
            give_up_at: float | None = None
            try:
                give_up_at = await self._serve_jobs(executor, handoff, burst)
            finally:
                # On every way out: the settler is shielded, and returns only once closed. Out
                # by an error or a cancel from outside, what it holds gets the time a stop would.
                if give_up_at is None:
                    give_up_at = anyio.current_time() + SETTLE_AFTER_GRACE
                settler.close(give_up_at=give_up_at)
            await settled.wait()
            if events:
                await events.close()  # deliver what is left before the services stop
            services.cancel_scope.cancel()
        log.info("worker %s stopped: %s", self.name, self.stats)
        if executor.threads_running:
            log.warning(
                "worker %s: %d sync handler thread(s) still running, abandoned (a thread cannot "
                "be stopped; their jobs were handed back or failed)",
                self.name, executor.threads_running,
            )  # fmt: skip

    async def _serve_jobs(self, executor: Executor, handoff: Handoff, burst: bool) -> float:
        """Fetch and run jobs until stopped (or, in burst mode, done), then let the running
        ones finish within the grace period. Returns until when the settler may go on (anyio
        clock)."""
        async with anyio.create_task_group() as runners:
            self._runners_left = self.concurrency
            for _ in range(self.concurrency):
                runners.start_soon(self._runner, handoff, executor)
            try:
                with anyio.CancelScope() as self._fetching:  # stop() cancels it
                    if self._stopping.is_set():
                        self._fetching.cancel()
                    await self._fetch(handoff, burst)
            finally:
                self._fetching = None
                self._hand_back_waiting()
                handoff.close()
            grace_end = await self._grace()
        # Every runner is done: deliver what they settled, then stop; a broker that is down
        # is not waited out past the grace period (the leases expire, the jobs come back).
        # One failing all along (down, or refusing writes: READONLY) gets no time past it.
        after = 0.0 if self._settler.failing else SETTLE_AFTER_GRACE
        return max(grace_end, anyio.current_time()) + after

    @property
    def running_count(self) -> int:
        """Jobs running now (read-only)."""
        return len(self._running)

    def running_jobs(self) -> list[ListedJob]:
        """The jobs running now, oldest first, as the worker's presence record lists them."""
        return [
            ListedJob(id=r.lease.job.id, task=r.lease.job.task, started_at=r.lease.job.started_at)
            for r in list(self._running.values())  # a snapshot: a chain's thread changes it
        ]

    @property
    def settling_count(self) -> int:
        """Outcomes handed to the broker whose answer has not come yet (read-only)."""
        return len(self._ledger)

    @property
    def jobs_done(self) -> int:
        """Jobs this worker settled, any outcome but a release (``WorkerStats.jobs_done``)."""
        return self.stats.jobs_done

    @property
    def threads_running(self) -> int:
        """Sync handlers of this worker still running in threads (after a stop: abandoned;
        a process that exits waits for them unless it ends with ``os._exit``)."""
        return 0 if self._executor is None else self._executor.threads_running

    async def _grace(self) -> float:
        """Let running jobs finish until the grace period, counted from the stop, ends (at once
        after a hard stop); then stop the rest, to be handed back. Returns when it ends (anyio
        clock): the settler may go on until then even if every job is done sooner."""
        began = self._stopped_at if self._stopped_at is not None else anyio.current_time()
        with anyio.CancelScope(deadline=-math.inf if self._hard else began + self.grace):
            await self._drained.wait()
        cut_short = self._hard  # a hard stop (second signal) ended the grace period early
        self._hard = True  # grace is over: what is still running or buffered goes back
        for running in list(self._running.values()):
            running.stop(StopReason.RELEASE)
        return anyio.current_time() if cut_short else began + self.grace

    def stop(self, *, graceful: bool = True) -> None:
        """Stop reserving now and hand back the jobs held waiting for a runner (``prefetch``),
        unrun; running jobs get the grace period, counted from the first call, unless
        ``graceful`` is false or this is the second call: then they are stopped and handed back
        now. Call from the worker's event loop."""
        if not graceful or self._stopping.is_set():
            self._hard = True
            for running in list(self._running.values()):
                running.stop(StopReason.RELEASE)
            self._drained.set()
        if self._stopped_at is None:
            with contextlib.suppress(RuntimeError):  # no event loop: not running, no grace yet
                self._stopped_at = anyio.current_time()
        self._stopping.set()
        if self._fetching is not None:
            self._fetching.cancel()
        if self._reserving is not None:
            self._reserving.cancel()
        self._hand_back_waiting()

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._run_embedded)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        # Cancelled from outside: stop at once, handing running jobs back (not left leased).
        self.stop(graceful=not isinstance(exc, anyio.get_cancelled_exc_class()))
        if exc is not None and not isinstance(exc, anyio.get_cancelled_exc_class()):
            # The application's own error: stop the worker, then let the error out unwrapped
            # (handed to the task group, it would come out inside an ExceptionGroup).
            await self._tg.__aexit__(None, None, None)
            return None
        return await self._tg.__aexit__(exc_type, exc, tb)

    async def _run_embedded(self) -> None:
        # Shielded: a cancelled host must not cut the worker's stop short (running jobs would
        # stay leased until their leases expire); ``__aexit__`` always stops it, and a stop
        # ends in bounded time.
        with anyio.CancelScope(shield=True):
            await self.run()

    # -- fetching ----------------------------------------------------------------------------
    async def _fetch(self, handoff: Handoff, burst: bool) -> None:
        """Reserve jobs for idle runners until cancelled (``stop``) or, in burst mode, until the
        queues are empty. Every wait in here is a checkpoint of the ``_fetching`` scope."""
        await declare_limits(self.broker, self.limits)  # before the first reserve
        outage = Outage("reserve", log)
        while not self._stopping.is_set():
            free = self.concurrency + self.prefetch - self._busy
            # While jobs are held and every runner is busy, wait: the buffer is refilled once
            # it is empty, all its room in one reserve (a reserve of one at each finished job
            # would cost a round trip each, and break up the batches runners settle together).
            if free <= 0 or (len(handoff) and len(self._running) >= self.concurrency):
                self._slot_free = anyio.Event()
                await self._slot_free.wait()
                continue
            try:
                leases = await self._reserve(free, 0 if burst else BLOCK_SECONDS)
                if not leases and burst:
                    if self._busy == 0 and await self._idle():
                        return
                    leases = await self._reserve(free, BURST_TICK)
                # The leases began during the call (a blocking one waits for its jobs): counted
                # from its answer, off by at most the answer's way back.
                held_until = time.monotonic() + self.lease
                outage.recovered()
            except _FATAL:
                raise  # waiting does not heal these: stop with the error
            except (TaskitError, OSError) as exc:
                await anyio.sleep(outage.failed(exc))
                continue
            if self._stopping.is_set():  # a broker that returned leases to a cancelled reserve
                self._hand_back(leases)
                return
            self._busy += len(leases)
            handoff.put([RunningJob(lease, held_until=held_until) for lease in leases])
            if 0 < len(leases) < free:
                # The queues ran dry: let the runners start these before asking the broker
                # again (that call would find nothing and only delay them: ~60 us on Redis).
                await anyio.lowlevel.checkpoint()

    async def _reserve(self, count: int, timeout: float) -> list[Lease]:
        return await self.broker.reserve(
            self.queues, count=count, lease=self.lease, timeout=timeout
        )

    def _hand_back_waiting(self) -> None:
        """Hand back, unrun, every job waiting for a runner (a stop: RELEASE, attempt refunded)."""
        if self._handoff is None:
            return
        for waiting in self._handoff.take_all():
            waiting.stop(StopReason.RELEASE)
            self._settle_unrun(waiting)
            self._free_slot()

    def _settle_stopped_waiting(self) -> None:
        """Settle the waiting jobs the heartbeat stopped (lease lost, cancel requested)."""
        if self._handoff is not None:
            for waiting in self._handoff.take_stopped():
                self._settle_unrun(waiting)
                self._free_slot()

    def _settle_unrun(self, waiting: RunningJob) -> None:
        """Settle a held job that was stopped before it started (its place is freed by the
        caller)."""
        job, token = waiting.lease.job, waiting.lease.token
        outcome = stopped_outcome(job, token, waiting.reason)
        if outcome is None:
            self._ledger.lost(job, "job %s lost its lease before it started; not run")
        else:
            self._ledger.expect(token, job)
            self._settler.submit(outcome)

    def _free_slot(self) -> None:
        """A held job is done with: the fetcher may reserve in its place."""
        self._busy -= 1
        self._slot_free.set()

    def _hand_back(self, leases: list[Lease]) -> None:
        """Release leases that came after the stop (through the settler: it is shielded)."""
        for lease in leases:
            self._ledger.expect(lease.token, lease.job)
            self._settler.submit(
                Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.RELEASE)
            )

    async def _idle(self) -> bool:
        stats = await self.broker.stats(self.queues)
        return all(s.queued + s.scheduled + s.running == 0 for s in stats.values())

    # -- running -----------------------------------------------------------------------------
    async def _runner(self, handoff: Handoff, executor: Executor) -> None:
        try:
            # The scope of the runner's own reserves (``_run_next``): ``stop`` cancels it.
            with anyio.CancelScope() as reserving:
                while (running := await handoff.get()) is not None:
                    try:
                        taking = await self._run_one(running, executor)
                        if self._holds_one:
                            await self._run_next(executor, reserving, taking)
                    finally:
                        self._free_slot()
        finally:
            self._runners_left -= 1
            if self._runners_left == 0:
                self._drained.set()

    async def _run_next(
        self, executor: Executor, reserving: anyio.CancelScope, taking: Taking | None
    ) -> None:
        """Run the next jobs while they come at once (the worker holds one job at a time): each
        taken by the settler with the outcome of the one before (``taking``, one broker call for
        both), else reserved here: the same reserve the fetcher would make for this idle runner,
        without waking the fetcher and then this runner again (two passes of the event loop a
        job). The place of the job that ended passes to the next; on an empty queue, an error or
        a stop, this returns and the caller frees it, waking the fetcher, which waits, backs off
        and logs as ever."""
        while True:
            if taking is None:
                # Whatever else waits runs first: the settler sends the outcome just submitted.
                await anyio.lowlevel.checkpoint()
            if self._stopping.is_set():  # ``stop`` cancels ``reserving`` only while it is used
                if taking is not None:
                    taking.abandon()
                return
            self._reserving = reserving
            try:
                leases = None if taking is None else await taking.wait()
                if leases is None:
                    leases = await self._reserve(1, 0)
            except (TaskitError, OSError):
                return  # the fetcher's reserve meets it too, and rides it out
            finally:
                self._reserving = None
            held_until = time.monotonic() + self.lease
            if not leases:
                return
            if self._stopping.is_set():  # a broker that returned leases to a cancelled reserve
                self._hand_back(leases)
                return
            taking = await self._run_one(RunningJob(leases[0], held_until=held_until), executor)

    async def _run_one(self, running: RunningJob, executor: Executor) -> Taking | None:
        """Run one held job and submit its outcome (its place is freed by the caller). A worker
        that holds one job at a time asks the settler for its next job with the outcome: the
        ``Taking`` returned (None: not asked)."""
        lease = running.lease
        job = lease.job
        if self._hard:
            running.stop(StopReason.RELEASE)
        elif running.reason is None and time.monotonic() >= running.held_until:
            # Its lease ran out while it waited (the loop stalled, or the broker was out of
            # reach for a lease): another worker may run it now. Not started here; handed back
            # (refused if the lease has passed on, applied if not).
            log.warning("job %s: its lease ran out while it waited for a runner; not run here",
                        job.id, extra=extra(job))  # fmt: skip
            running.stop(StopReason.RELEASE)
        if running.reason is not None:  # stopped while it waited: never started
            self._settle_unrun(running)
            return None
        if self._chain is not None and (prepared := executor.prepare_sync(running)) is not None:
            return await self._run_chain(prepared)
        self._running[lease.token] = running
        try:
            if log.isEnabledFor(logging.DEBUG):  # one INFO line a job: its end (_ledger)
                log.debug("job %s (%s) attempt %d started", job.id, job.task, job.attempts,
                          extra=extra(job))  # fmt: skip
            if self._events:
                self._events.started(job)
            began = time.perf_counter()
            attempt = self.hooks.attempt(job) if self.hooks else None
            if attempt is None:
                outcome = await executor.execute(running)
            else:
                with attempt:
                    outcome = await executor.execute(running)
            return await self._submit(running, outcome, time.perf_counter() - began, attempt)
        finally:
            del self._running[lease.token]

    async def _run_chain(self, prepared: Prepared) -> Taking | None:
        """Run ``prepared`` and the ``def`` jobs that follow it in a chain (``taskit._chain``),
        then settle what it handed back here."""
        assert self._chain is not None
        assert self._executor is not None
        first = prepared.running.lease.token
        end: End | None = None
        try:
            end = await self._chain.run(prepared)
            if end.ending is Ending.NEXT:
                taking = Taking(self.queues, self.lease, self._hand_back)
                taking.answer(end.leases)
                return taking
            assert end.prepared is not None
            running = end.prepared.running
            if end.ending is Ending.UNRUN:
                if running.reason is None:  # the worker stops now: not started
                    running.stop(StopReason.RELEASE)
                self._settle_unrun(running)
                return None
            outcome = end.outcome
            if end.ending is Ending.TAKEN:  # a stop's reason wins over a timeout, as in execute
                if running.reason is None and end.timed_out:
                    outcome = await self._executor.timed_out(end.prepared)
                else:
                    outcome = self._executor.stopped(end.prepared)
            elif end.error is not None:
                await self._executor.failed(end.prepared, end.error)
            return await self._submit(running, outcome, end.took, None)
        finally:
            self._running.pop(first, None)
            if end is not None and end.prepared is not None:
                self._running.pop(end.prepared.running.lease.token, None)

    async def _submit(
        self, running: RunningJob, outcome: Outcome | None, took: float, attempt: Attempt | None
    ) -> Taking | None:
        """Hand a run job's outcome to the settler (None: its lease was lost, nothing to
        settle); the ``Taking`` of its next job, if asked for with it."""
        job = running.lease.job
        if outcome is not None and running.reporter.unsent is not None:
            await self._progress.flush(self._reporters())  # its last report, before settling
        if outcome is None:
            self._ledger.lost(job, "job %s lost its lease; its outcome is dropped", attempt)
            return None
        self._ledger.expect(outcome.token, job, took, attempt)
        taking: Taking | None = None
        if self._holds_one and self._settler.takes and not self._stopping.is_set():
            taking = Taking(self.queues, self.lease, self._hand_back)
        self._settler.submit(outcome, taking)
        return taking

    def _jobs_held(self) -> list[RunningJob]:
        """Every job whose lease the worker keeps: running, then waiting for a runner."""
        held = list(self._running.values())
        if self._handoff is not None:
            held.extend(self._handoff)
        return held

    def _reporters(self) -> list[Reporter]:
        # A snapshot first (one call under the GIL): a chain's thread adds and removes jobs.
        return [running.reporter for running in list(self._running.values())]

    async def _watch_signals(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                self.signalled(signum)

    def signalled(self, signum: int) -> None:
        """Act on a stop signal: the first stops gracefully, any later one at once."""
        graceful = not self._stopping.is_set()
        log.info(
            "worker %s got %s: %s", self.name, signal.Signals(signum).name,
            "stopping gracefully" if graceful else "stopping now",
        )  # fmt: skip
        self.stop(graceful=graceful)


def _steps_now(broker: Broker) -> bool:
    """Whether ``broker`` may settle a job and take the next from a handler thread
    (``Broker.settle_and_reserve_now`` is its own, not the base's none)."""
    return type(broker).settle_and_reserve_now is not Broker.settle_and_reserve_now


async def _set_after(run: Callable[[], Awaitable[None]], done: anyio.Event) -> None:
    try:
        await run()
    finally:
        done.set()
