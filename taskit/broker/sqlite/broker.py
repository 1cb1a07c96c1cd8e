"""``SqliteBroker``: the Broker contract on one SQLite file, shared by the processes of a host.

Each call runs all or none in a ``BEGIN IMMEDIATE`` transaction off the event loop (``store``:
calls queued together share one commit), so it is atomic across processes; the steps it runs
are in ``lifecycle``, ``outcomes``, ``admin``, ``coordination`` and ``streams``. Reserves wait
without polling (``wake``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import anyio
import anyio.lowlevel

from taskit._storable import storable
from taskit._urls import SQLITE_SYNCHRONOUS
from taskit.broker.base import Broker, BrokerOptions, OnceState
from taskit.broker.browse import Counts, JobPage, Listing, check_page
from taskit.broker.checks import check_queue, check_specs, check_stream, check_usage
from taskit.broker.sqlite import (
    admin,
    browse,
    coordination,
    fair,
    lifecycle,
    limits,
    outcomes,
    streams,
    tally,
    workflows,
)
from taskit.broker.sqlite.lifecycle import Given
from taskit.broker.sqlite.store import Store, Tx
from taskit.broker.sqlite.wake import FALLBACK, Wakeups
from taskit.clock import Clock, FakeClock, SystemClock
from taskit.config import Settings
from taskit.errors import ConfigurationError
from taskit.fairness import check_groups
from taskit.job import (
    Job,
    JobResult,
    Lease,
    LeaseState,
    Outcome,
    ProgressUpdate,
    QueueStats,
    encode_progress,
    stored_form,
)
from taskit.limits import LimitSpec, LimitUsage
from taskit.workflow import WorkflowState

__all__ = ["SqliteBroker"]

_T = TypeVar("_T")
#: A call touching up to this many jobs may run on the event loop (``Store.run``'s ``small``).
SMALL = 16


class SqliteBroker(Broker):
    """A durable broker in one SQLite file (``path``), for the processes of one host.

    ``result_ttl``: seconds a finished job stays readable; None (the default): the App's
    ``result_ttl`` setting. ``synchronous``: ``"normal"`` (the default: a commit survives a
    crash of the process; a power loss may take those since the last checkpoint) or ``"full"``
    (a power loss too: an fsync a commit, so every call runs on the store's thread). ``clock``
    (default: the machine's wall clock) is what delays, leases and TTLs are judged by; a
    ``FakeClock`` is for tests in one process only (every process must share one clock).
    Raises ``ConfigurationError`` for a bad ``result_ttl`` or ``synchronous``; the first call
    raises it for a database of a newer schema (``schema``).
    """

    in_process = False

    def __init__(
        self, path: str | os.PathLike[str], *, result_ttl: float | None = None,
        clock: Clock | None = None, synchronous: str = "normal",
    ) -> None:  # fmt: skip
        synchronous = synchronous.lower() if isinstance(synchronous, str) else synchronous
        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}, got {synchronous!r}"
            )
        self._options = BrokerOptions(("result_ttl",), result_ttl=result_ttl)
        self._result_ttl = self._options.current.result_ttl
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._path = os.fspath(path)
        self._wake = Wakeups(self._path)
        self._store = Store(  # on_ready: other processes' waiters
            self._path, self._clock, self._wake.notify, full=synchronous == "full"
        )
        self._clock_driven = isinstance(self._clock, FakeClock)
        if isinstance(self._clock, FakeClock):
            self._clock.on_change(self._wake.notify)

    def configure(self, settings: Settings) -> None:
        self._result_ttl = self._options.adopt(settings).result_ttl

    async def _run(self, fn: Callable[[Tx], _T], *, ends: bool = True, rows: int = SMALL + 1) -> _T:
        """``fn`` in one transaction; ``ends`` False: it ends no job (``_ending`` not needed);
        ``rows``: about how many jobs it touches (up to ``SMALL``, it may run on the loop)."""
        fn = self._ending(fn) if ends else fn
        out, ready = await self._store.run(fn, small=rows <= SMALL)
        if ready:
            self._wake.wake_local()  # the store notified the other processes' waiters
        return out

    def _ending(self, fn: Callable[[Tx], _T]) -> Callable[[Tx], _T]:
        """``fn``, then, in its transaction, what the jobs it ended do to their workflows."""
        ttl = self._result_ttl

        def step(tx: Tx) -> _T:
            out = fn(tx)
            workflows.apply_ends(tx, ttl)
            return out

        return step

    # -- producing -------------------------------------------------------------------------
    def _given(self, jobs: Sequence[Job], delays: Sequence[float] | None) -> list[Given]:
        if delays is not None and len(delays) != len(jobs):
            raise ValueError(f"got {len(delays)} delays for {len(jobs)} jobs")
        check_groups(jobs)
        given: list[Given] = []
        for i, job in enumerate(jobs):
            stored, spec = stored_form(job)  # SerializationError: nothing stored
            scheduled = None if job.scheduled_at is None else job.scheduled_at.timestamp()
            delay = delays[i] if delays is not None else 0.0
            if job.dedup is not None and job.dedup.mode == "debounce":
                delay = max(delay, job.dedup.window)  # a debounced job waits its window
            given.append(Given(stored, spec, delay, scheduled))
        return given

    async def enqueue(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job]:
        given = self._given(jobs, delays)
        if not given:
            return []
        ttl = self._result_ttl
        ends = not all(lifecycle.plain(item.job) for item in given)
        return await self._run(
            lambda tx: lifecycle.enqueue(tx, given, ttl), ends=ends, rows=len(given)
        )

    def enqueue_blocking(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job] | None:
        given = self._given(jobs, delays)
        if not given:
            return []
        ttl = self._result_ttl
        call: Callable[[Tx], list[Job]] = lambda tx: lifecycle.enqueue(tx, given, ttl)  # noqa: E731
        if not all(lifecycle.plain(item.job) for item in given):
            call = self._ending(call)
        out, ready = self._store.run_blocking(call)
        if ready:
            self._wake.notify()  # this broker's own waiters too: they listen on sockets
        return out

    # -- consuming -------------------------------------------------------------------------
    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller takes nothing
        give_up = anyio.current_time() + max(timeout, 0.0)
        leases = await self._take(queues, count, lease)
        if leases or timeout <= 0:
            return await self._handed_over(leases)
        with self._wake.signal() as signal:  # bound before the next look: no wake-up lost
            while True:
                event = self._wake.event()
                signal.drain()
                leases, due, more = await self._run(
                    lambda tx: self._take_or_due(tx, queues, count, lease), rows=count
                )
                if more and not leases:
                    continue  # it stopped looking past held-back jobs: look again at once
                remaining = give_up - anyio.current_time()
                if leases or remaining <= 0:
                    return await self._handed_over(leases)
                wait = min(remaining, FALLBACK)
                if due is not None and not self._clock_driven:
                    wait = min(wait, max(due - self._clock.time(), 0.0) + 0.001)
                await signal.wait(event, wait)

    async def _take(self, queues: Sequence[str], count: int, lease: float) -> list[Lease]:
        """``lifecycle.take``, called again while a call stopped looking past jobs its limits
        held back (each call holds back a bounded number, in its own transaction)."""
        while True:
            leases, more = await self._run(
                lambda tx: lifecycle.take(tx, queues, count, lease), rows=count
            )
            if leases or not more:
                return leases

    def _take_or_due(
        self, tx: Tx, queues: Sequence[str], count: int, lease: float
    ) -> tuple[list[Lease], float | None, bool]:
        """The leases taken; when none were, when the next delayed job of ``queues`` falls due
        (None: none is delayed); and whether more may be ready (``lifecycle.take``)."""
        leases, more = lifecycle.take(tx, queues, count, lease)
        if leases or more or not queues:
            return leases, None, more
        marks = ", ".join("?" * len(queues))
        (due,) = tx.conn.execute(
            f"SELECT min(due) FROM jobs WHERE status IN ('scheduled', 'retrying') "
            f"AND queue IN ({marks})",
            tuple(queues),
        ).fetchone()
        return leases, due, False

    async def extend(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        return await self._run(lambda tx: lifecycle.extend(tx, leases, lease), rows=len(leases))

    async def settle(self, outcomes_: Sequence[Outcome]) -> list[bool]:
        checked = [storable(outcome) for outcome in outcomes_]  # each alone, before the call
        ttl = self._result_ttl
        return await self._run(lambda tx: outcomes.settle(tx, checked, ttl), rows=len(checked))

    async def settle_and_reserve(
        self, outcomes_: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
    ) -> tuple[list[bool], list[Lease]] | None:
        """One transaction (one commit: a job settled and the next taken cost about two thirds
        of the two transactions apart). A reserve that stopped looking past jobs its limits
        held back answers what it took, maybe nothing (``reserve`` would look again)."""
        step = self._settle_and_take(outcomes_, queues, count, lease)
        if step is None:
            return None
        return await self._run(step, ends=False, rows=len(outcomes_) + count)

    def settle_and_reserve_now(
        self, outcomes_: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
    ) -> tuple[list[bool], list[Lease]] | None:
        """The same transaction in the calling thread, when the write lock is free at once
        (``Store.run_now``; never with ``synchronous=full``). Waiting reserves of every process,
        this one's included, are woken through their sockets."""
        step = self._settle_and_take(outcomes_, queues, count, lease)
        if step is None:
            return None
        done = self._store.run_now(step)
        return None if done is None else done[0]

    def _settle_and_take(
        self, outcomes_: Sequence[Outcome], queues: Sequence[str], count: int, lease: float
    ) -> Callable[[Tx], tuple[list[bool], list[Lease]]] | None:
        """The step of ``settle_and_reserve``: None where this broker may not take it."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if not self._steps_own(SqliteBroker):
            return None
        checked = [storable(outcome) for outcome in outcomes_]
        ttl = self._result_ttl

        def both(tx: Tx) -> tuple[list[bool], list[Lease]]:
            applied = outcomes.settle(tx, checked, ttl)
            # What the jobs that ended do to their workflows first, as two calls would: the
            # take then sees the nodes they released, and never one they end.
            workflows.apply_ends(tx, ttl)
            return applied, lifecycle.take(tx, queues, count, lease)[0]

        return self._ending(both)  # as any call: what the take ended (expiries) too

    async def set_progress(self, updates: Sequence[ProgressUpdate]) -> list[bool]:
        encoded = [(u.job_id, u.token, encode_progress(u.progress)) for u in updates]
        return await self._run(lambda tx: lifecycle.set_progress(tx, encoded), rows=len(encoded))

    async def reclaim(
        self, queues: Sequence[str], *, lease: float, limit: int = 100
    ) -> list[Lease]:
        ttl = self._result_ttl
        return await self._run(lambda tx: lifecycle.reclaim(tx, queues, lease, limit, ttl))

    # -- reading and admin -----------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        return await self._run(lambda tx: admin.get(tx, job_id), rows=1)

    async def cancel(self, job_id: str) -> bool:
        ttl = self._result_ttl
        return await self._run(lambda tx: admin.cancel(tx, job_id, ttl))

    async def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        return await self._run(lambda tx: admin.stats(tx, queues))

    async def dead_letters(self, queue: str, *, limit: int = 100, offset: int = 0) -> list[Job]:
        return await self._run(lambda tx: admin.dead_letters(tx, queue, limit, offset))

    async def requeue_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        return await self._run(lambda tx: admin.requeue_dead(tx, queue, job_ids))

    async def purge(self, queue: str) -> int:
        return await self._run(lambda tx: admin.purge(tx, queue))

    async def purge_dead(self, queue: str) -> int:
        return await self._run(lambda tx: admin.purge_dead(tx, queue))

    async def pause_queue(self, queue: str) -> bool:
        check_queue(queue)
        return await self._run(lambda tx: admin.pause(tx, queue))

    async def resume_queue(self, queue: str) -> bool:
        check_queue(queue)
        return await self._run(lambda tx: admin.resume(tx, queue))

    async def paused_queues(self) -> frozenset[str]:
        return await self._run(admin.paused)

    # -- coordination ------------------------------------------------------------------------
    async def claim(self, key: str, ttl: float) -> bool:
        if not ttl > 0:
            raise ValueError(f"a claim's ttl must be > 0 seconds, got {ttl!r}")
        return await self._run(lambda tx: coordination.claim(tx, key, ttl))

    async def begin_once(self, key: str, token: str, *, hold: float) -> OnceState:
        if not hold > 0:
            raise ValueError(f"a once key's hold must be > 0 seconds, got {hold!r}")
        return await self._run(lambda tx: coordination.begin_once(tx, key, token, hold))

    async def end_once(self, key: str, token: str, *, done_for: float | None) -> bool:
        if done_for is not None and not done_for > 0:
            raise ValueError(f"a once key's done_for must be > 0 seconds, got {done_for!r}")
        return await self._run(lambda tx: coordination.end_once(tx, key, token, done_for))

    async def announce(self, name: str, record: bytes, *, ttl: float) -> None:
        if not ttl > 0:
            raise ValueError(f"an announcement's ttl must be > 0 seconds, got {ttl!r}")
        await self._run(lambda tx: coordination.announce(tx, name, record, ttl))

    async def withdraw(self, name: str) -> None:
        await self._run(lambda tx: coordination.withdraw(tx, name))

    async def live(self) -> dict[str, bytes]:
        return await self._run(coordination.live)

    # -- streams -----------------------------------------------------------------------------
    async def stream_add(self, stream: str, entry: bytes, *, maxlen: int) -> str:
        check_stream(maxlen=maxlen)
        return await self._run(lambda tx: streams.add(tx, stream, entry, maxlen))

    async def stream_read(
        self, stream: str, group: str, consumer: str, *, count: int, claim_after: float
    ) -> list[tuple[str, bytes]]:
        check_stream(count=count, claim_after=claim_after)
        return await self._run(lambda tx: streams.read(tx, stream, group, count, claim_after))

    async def stream_ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        return await self._run(lambda tx: streams.ack(tx, stream, group, ids))

    # -- workflows (the ends they apply: ``_ending``) -----------------------------------------
    async def workflow(self, workflow_id: str) -> WorkflowState | None:
        return await self._run(lambda tx: workflows.state(tx, workflow_id))

    async def workflow_results(
        self, workflow_id: str, job_ids: Sequence[str]
    ) -> list[JobResult | None]:
        return await self._run(lambda tx: workflows.results(tx, workflow_id, job_ids))

    async def cancel_workflow(self, workflow_id: str) -> int:
        ttl = self._result_ttl
        return await self._run(lambda tx: workflows.cancel(tx, workflow_id, ttl))

    # -- browsing ------------------------------------------------------------------------------
    async def list_jobs(
        self,
        queue: str,
        listing: Listing,
        *,
        cursor: str | None = None,
        limit: int = 50,
        task: str | None = None,
        text: str | None = None,
    ) -> JobPage:
        check_page(limit, cursor)
        listing, ttl = Listing(listing), self._result_ttl
        return await self._run(
            lambda tx: browse.list_jobs(tx, queue, listing, cursor, limit, task, text, ttl)
        )

    async def counts(
        self, since: float, until: float | None = None, queues: Sequence[str] | None = None
    ) -> list[Counts]:
        return await self._run(lambda tx: tally.read(tx, since, until, queues))

    async def promote(self, job_id: str) -> bool:
        return await self._run(lambda tx: browse.promote_job(tx, job_id))

    async def forget(self, job_ids: Sequence[str]) -> int:
        return await self._run(lambda tx: browse.forget(tx, job_ids))

    async def stream_tail(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, bytes]]:
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ValueError(f"stream_tail: count must be an int > 0, got {count!r}")
        return await self._run(lambda tx: browse.stream_tail(tx, stream, after, count))

    async def close(self) -> None:
        self._store.close()
        self._wake.close()

    # -- flow control: limits ---------------------------------------------------------------
    async def set_limits(
        self, specs: Mapping[str, LimitSpec | None], *, only_new: bool = False
    ) -> None:
        checked = check_specs(specs)
        await self._run(lambda tx: fair.front(tx, limits.set_specs(tx, checked, only_new)))

    async def limit_specs(self) -> dict[str, LimitSpec]:
        return await self._run(limits.specs)

    async def limit_usage(self, name: str, *, top: int = 10) -> LimitUsage:
        check_usage(name, top)
        return await self._run(lambda tx: limits.usage(tx, name, top))
