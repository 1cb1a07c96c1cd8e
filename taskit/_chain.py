"""A chain of ``def`` jobs run back to back by one handler thread, for a worker that holds one
job at a time.

There, each ``def`` job costs two hops between the event loop and a handler thread (the call
and its answer): two thread wake-ups, more than the whole broker step of a job on SQLite. Where
the broker can settle a job and take the next in one step from any thread, at once
(``Broker.settle_and_reserve_now``), the handler thread runs the chain itself: it calls the
handler, judges the outcome (``Executor.judge``), settles it and takes the next job in that
step, and calls the next one, while the jobs come at once and need nothing of the loop.

The event loop keeps doing the rest beside it: the heartbeat keeps the leases of the jobs the
chain lists in the worker's running jobs; a timer on the loop keeps each job's timeout (armed
again only when a job's deadline comes sooner than the one it waits for, so jobs with one
timeout cost it one wake-up a timeout period); and a job stopped from the loop (shutdown,
cancel, lost lease) or timed out is taken from the chain there (``RunningJob.on_stop``): the
loop settles it as it settles any job, while the thread, which cannot be stopped, runs the
handler on and drops what it returns.

The chain ends, handing what it holds to the loop (an ``End``), whenever the next step needs
the loop: no job ready, a next job that is not a plain ``def`` one (``Executor.prepare_sync``),
a stop, an ``on_failure`` hook to call, progress to store before the settle, or a step the
broker cannot take at once (its lock held, an error: the loop's settler then meets it, waits
and logs as ever).
"""

from __future__ import annotations

import contextvars
import enum
import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from taskit._settler import Settled
from taskit.execution import Executor, Prepared, RunningJob
from taskit.job import Job, Lease, Outcome
from taskit.progress import reporting

if TYPE_CHECKING:
    from taskit._threads import HandlerThreads
    from taskit.broker.base import Broker

__all__ = ["Chain", "End", "Ending"]


class Ending(enum.Enum):
    """How a chain handed over to the loop."""

    #: Its last job settled: the leases taken with it (an empty list: none was ready), to run
    #: on the loop (or hand back, if the worker is stopping).
    NEXT = "next"
    #: A job stopped before its handler was called: to settle unrun (its ``reason``).
    UNRUN = "unrun"
    #: A job the loop took while its handler ran (stopped, or timed out: ``timed_out``).
    TAKEN = "taken"
    #: A job run whose ``outcome`` the loop settles (with ``error`` told to ``on_failure``).
    SETTLE = "settle"


@dataclass(eq=False, slots=True)
class End:
    """What a chain hands to the loop (``ending`` says which fields hold)."""

    ending: Ending
    leases: list[Lease] = field(default_factory=list)
    prepared: Prepared | None = None
    outcome: Outcome | None = None
    error: BaseException | None = None
    took: float = 0.0
    timed_out: bool = False


class Chain:
    """A worker's chain runner (one at a time). ``running``: the worker's running jobs by lease
    token (the heartbeat's list), kept by the chain for the jobs it runs; ``record(job,
    outcome, settled, took)``: what the worker does with a job the chain settled (its log line
    and count; from the thread); ``stopping`` / ``hard``: whether the worker is stopping (no
    more jobs are taken or started), or stopping now (running ones are handed back too);
    ``hand_back(leases)``: release leases taken for nobody (unrun, the attempt refunded)."""

    def __init__(
        self,
        broker: Broker,
        executor: Executor,
        threads: HandlerThreads,
        *,
        queues: Sequence[str],
        lease: float,
        running: dict[str, RunningJob],
        record: Callable[[Job, Outcome, Settled, float], None],
        stopping: Callable[[], bool],
        hard: Callable[[], bool],
        hand_back: Callable[[list[Lease]], None],
    ) -> None:
        self._broker = broker
        self._executor = executor
        self._threads = threads
        self._queues = list(queues)
        self._lease = lease
        self._running = running
        self._record = record
        self._stopping = stopping
        self._hard = hard
        self._hand_back = hand_back

    async def run(self, first: Prepared) -> End:
        """Run ``first`` and the jobs that follow it in a handler thread; what the chain ended
        with. Cancelled from outside, the thread starts no further job: between two jobs this
        waits for it (it never blocks there) and hands back what it took; a job whose handler
        runs keeps its lease until the lease runs out, as a cancelled runner's job does."""
        return await _Run(self).run(first)


class _Run:
    """One chain, from the job it starts with to its ``End``. Its own state, apart from any
    earlier chain's: a thread the loop took a job from runs on with its ``_Run``, which the
    loop has left (``gone``)."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain
        self._lock = threading.Lock()  # the fields below: thread and loop
        self._current: Prepared | None = None  # the job whose handler runs now
        # The first job, until a thread takes the chain's call (it waits for a free one).
        self._queued: Prepared | None = None
        self._started = False  # a thread took the chain's call
        self._began = 0.0  # when it began (time.perf_counter())
        self._due: float | None = None  # its deadline (time.monotonic()), if it has a timeout
        self._armed = math.inf  # the deadline the loop's timer waits for
        self._taken: End | None = None  # the job the loop took from the thread
        self._gone = False  # the loop stopped waiting for the thread: it takes nothing more
        self._poke = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._end: End | None = None  # what the thread ended with, once it has
        self._waiter: anyio.Event | None = None  # set once it has, if the loop waits for it

    async def run(self, first: Prepared) -> End:
        # Listed at once, as a job of the loop's path is: the heartbeat keeps its lease and a
        # stop reaches it while the call waits for a free thread; its timeout counts from now.
        running = first.running
        running.on_stop = self._stopped
        self._chain._running[running.lease.token] = running
        self._queued, self._began = first, time.perf_counter()
        if first.timeout:
            self._due = time.monotonic() + first.timeout
        end: End | None = None
        try:
            async with anyio.create_task_group() as group:
                self._scope = group.cancel_scope
                group.start_soon(self._timer)
                end = await self._chain._threads.run(functools.partial(self._thread, first))
                group.cancel_scope.cancel()  # the timer
        finally:
            with self._lock:
                self._gone = True
                taken = self._taken
                # Left from outside (a cancel) while no handler runs: the thread ends at once.
                left = end is None and taken is None
                started = self._started
                if left and started and self._current is None and self._end is None:
                    self._waiter = anyio.Event()
            if left and not started:  # no thread will take the call now: the first is ours
                self._chain._running.pop(running.lease.token, None)
                self._chain._hand_back([running.lease])
            elif left:
                await self._hand_back_left()
        if taken is not None:
            return taken
        assert end is not None  # only a take cancels the group; one from outside raised
        return end

    async def _hand_back_left(self) -> None:
        """The loop left: wait for a thread between two jobs to end, and hand back the leases
        it took, so none is left leased to nobody."""
        if self._waiter is not None:
            with anyio.CancelScope(shield=True):
                await self._waiter.wait()
        end = self._end
        if end is None:
            return  # a handler runs: its job keeps its lease until it runs out
        if end.ending is Ending.NEXT and end.leases:
            self._chain._hand_back(end.leases)
        elif end.ending is Ending.UNRUN and end.prepared is not None:
            self._chain._hand_back([end.prepared.running.lease])

    # -- on the event loop -------------------------------------------------------------------
    def _stopped(self, running: RunningJob) -> None:
        """``running.stop`` was called: take it from the thread if its handler is running, or
        if it is the first job and its call still waits for a thread."""
        self._take(running, timed_out=False)

    def _take(self, running: RunningJob | None, *, timed_out: bool) -> None:
        with self._lock:
            current = self._current or self._queued
            if current is None or self._taken is not None or self._gone:
                return
            if running is not None and current.running is not running:
                return  # not started yet (the thread sees its reason) or already done
            if timed_out and (self._due is None or time.monotonic() < self._due):
                return
            took = time.perf_counter() - self._began
            self._taken = End(Ending.TAKEN, prepared=current, took=took, timed_out=timed_out)
        assert self._scope is not None
        self._scope.cancel()  # the runner stops waiting for the thread, which runs on

    async def _timer(self) -> None:
        """Take the running job from the thread once it passes its deadline."""
        while True:
            poke = self._poke = anyio.Event()
            with self._lock:
                due = self._due
                self._armed = due if due is not None else math.inf
            wait = math.inf if due is None else max(due - time.monotonic(), 0.0)
            with anyio.move_on_after(wait):
                await poke.wait()
            if due is not None:
                self._take(None, timed_out=True)

    def _wake_timer(self) -> None:
        self._poke.set()

    # -- in the handler thread ---------------------------------------------------------------
    def _thread(self, prepared: Prepared) -> End:
        with self._lock:
            if self._taken is not None or self._gone:
                return End(Ending.TAKEN)  # the loop took the first job, or left, meanwhile
            self._started = True
        end = self._chain_of(prepared)
        with self._lock:
            self._end = end
            waiter = self._waiter
        if waiter is not None:
            self._chain._threads.soon(waiter.set)
        return end

    def _chain_of(self, prepared: Prepared) -> End:
        chain = self._chain
        # Each handler gets a copy of the context the chain began in, as each call to a
        # handler thread does: what one sets (a contextvar) is not seen by the next.
        base = contextvars.copy_context()
        fresh = False  # the first job's start and deadline count from the loop's call
        while True:
            end = self._one(prepared, base, fresh)
            fresh = True
            if end.ending is not Ending.NEXT or not end.leases or chain._stopping():
                return end
            if self._gone:
                return end
            lease = end.leases[0]
            running = RunningJob(lease, held_until=time.monotonic() + chain._lease)
            following = chain._executor.prepare_sync(running)
            if following is None:
                return end  # the loop runs it
            prepared = following

    def _one(self, prepared: Prepared, base: contextvars.Context, fresh: bool) -> End:
        """Run one job (in a copy of ``base``) and settle it, taking the next. ``fresh``: its
        start and deadline count from now (not the first job's: from the loop's call)."""
        chain = self._chain
        running = prepared.running
        token = running.lease.token
        running.on_stop = self._stopped
        chain._running[token] = running
        poke = False
        with self._lock:
            self._queued = None
            unrun = (
                running.reason is not None
                or chain._stopping()
                or chain._hard()
                or self._gone
                or self._taken is not None  # taken by the loop while it waited for a thread
                # its lease ran out before it started (the loop path's check too)
                or time.monotonic() >= running.held_until
            )
            if not unrun:
                self._current = prepared
                if fresh:
                    self._began = time.perf_counter()
                    if prepared.timeout:
                        due = self._due = time.monotonic() + prepared.timeout
                        poke = due < self._armed
                began = self._began
        if unrun:
            if self._gone:  # handed back by the loop, if it waits (``_hand_back_left``)
                chain._running.pop(token, None)
            return End(Ending.UNRUN, prepared=prepared)
        if poke:
            chain._threads.soon(self._wake_timer)
        value: Any = None
        error: BaseException | None = None
        try:
            value = base.copy().run(_call, prepared)
        except BaseException as exc:  # as ``Executor.execute``: it fails its job, nothing more
            error = exc
        took = time.perf_counter() - began
        with self._lock:
            self._current, self._due = None, None
            taken, gone = self._taken is not None, self._gone
        if taken or gone:
            if not taken:  # nobody waits: dropped, and its lease no longer kept
                chain._running.pop(token, None)
            return End(Ending.TAKEN)  # the loop has it
        outcome, tell = chain._executor.judge(prepared, value, error, took)
        settle = End(Ending.SETTLE, prepared=prepared, outcome=outcome, error=tell, took=took)
        if tell is not None or running.reporter.unsent is not None or chain._stopping():
            return settle
        try:
            step = chain._broker.settle_and_reserve_now(
                [outcome], chain._queues, count=1, lease=chain._lease
            )
        except Exception:  # the loop's settler meets it again, and rides it out
            step = None
        if step is None:
            return settle
        applied, leases = step
        chain._running.pop(token, None)
        chain._record(
            running.lease.job, outcome, Settled.APPLIED if applied[0] else Settled.STALE, took
        )
        return End(Ending.NEXT, leases=leases)


def _call(prepared: Prepared) -> Any:
    """``prepared``'s handler called, its ``report_progress`` calls landing in its reporter."""
    fn = prepared.task.fn
    assert fn is not None  # ``prepare_sync`` took only tasks with a handler
    with reporting(prepared.running.reporter):
        return fn(*prepared.args, **prepared.kwargs)
