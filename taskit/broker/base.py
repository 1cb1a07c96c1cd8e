"""The Broker contract: where jobs wait, who holds them, and how they end.

Every broker (memory, Redis, ...) implements this class with the same semantics, checked by one
conformance suite (``tests/broker/``). Each method is one atomic step: another client sees the
state before it or after it, never between. A network broker does each in one round trip.

Delivery is *fenced at-least-once*:

* ``reserve`` hands a job out under a **lease**: a fresh random token and a deadline on the
  broker's clock. The attempt is counted at that moment.
* Only the current token can ``extend`` or ``settle`` the job. A stale token changes nothing and
  is answered ``False`` / ``LeaseState.LOST``.
* A lease that passes its deadline is handed back by ``reclaim`` (to a worker that decides retry
  or dead letter); the job runs again only then, and its ``attempts`` shows it.

Ordering: within a queue, higher ``priority`` first, FIFO among equals. A job scheduled for a time
never becomes reservable before that time on the broker's clock.

Fair queues: among the ready jobs of the default priority (0), those with a ``group`` are served
in turns over the groups that have ready jobs, one job per group per turn, FIFO within a group;
the ungrouped ones take one turn like a group (FIFO among them). Jobs of any other priority keep
the order above and ignore their group: higher priorities before every turn, lower ones after.
A group enters the rotation after every group already in it (it waits one round), or, for a
job put back at the front of its priority (a release, a retry at once), as the next turn; it
leaves with its last ready job. So of the jobs ready at a moment, while two groups both have
ready jobs, the numbers reserved from each differ by at most one. Every way a job becomes ready
(enqueue, a delay or retry falling due, release, retry at once, requeue of a dead letter) puts
a grouped job in its group, every way one stops being ready (reserve, cancel, purge) takes it
out; ``stats`` counts grouped jobs as queued. ``enqueue`` refuses a job whose group is not 1 to
``taskit.fairness.MAX_GROUP`` characters without NUL (``ValueError``, nothing stored). A queue
without groups costs nothing more (the Redis broker: one LLEN per queue per reserve).

Workflows (``taskit.dependencies``, ``taskit.workflow``): a job with ``Job.after`` waits for
the jobs it names, DEFERRED and in no queue. A job **ends** the first time it becomes COMPLETED,
FAILED, DEAD_LETTER or CANCELLED (by ``settle``, ``cancel``, ``cancel_workflow``, a ``purge``, a
dependency's failure, or a broker that dead-letters an unreadable record). In the same atomic
step as a job's end, the broker records its result in its workflow and applies it to each job
waiting for it:

* COMPLETED, or any end for a waiting job whose ``if_failed`` is CONTINUE: one parent fewer to
  wait for. With none left the job is **released**: PENDING at the back of its queue (or
  SCHEDULED until its due time, which counts from its enqueue as for any job), and reserves of
  its queue are woken.
* FAILED or DEAD_LETTER, for ``if_failed`` FAIL: the waiting job ends FAILED without running,
  ``error_type`` "DependencyFailed".
* CANCELLED (a purge counts as a cancel), for ``if_failed`` FAIL: it ends CANCELLED without
  running, ``error_type`` "DependencyCancelled".

The error of a job ended so is ``f"waited for job {parent}, which ended {status}"`` (``status``
the parent's ``JobStatus`` value), then ``f": {error}"`` when the parent's result has an error
text; but when the parent was itself ended so (its result's ``error_type`` is
"DependencyFailed"), it is the parent's error unchanged: it names the failure that started the
cascade, and does not grow down a long chain. A node's result, in its workflow, is
``taskit.job.result_of`` of its job as it stood at its end.

An ending job's own waiting jobs are handled the same way in that step (a cascade), so no job
ever waits for one that has ended. A job's end counts once: settles are fenced by the lease
token, and a job that ends again later (a requeued dead letter that then completes) changes
nothing in its workflow. Each ended node's result (``JobResult``; a failure's names its error)
stays in the workflow's record whatever its job's ``result_ttl``, until the workflow expires:
the broker's result TTL after its last node ended.

Browsing (``taskit.broker.browse``, the methods of ``Browsing``): jobs listed by state with a
cursor, counts per minute, ``promote``, ``forget`` and ``stream_tail``, for dashboards.

Durations are float seconds; timestamps are seconds since the epoch on the broker's clock.
"""

from __future__ import annotations

import abc
import enum
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

import anyio
import anyio.lowlevel

from taskit.broker.browse import Browsing
from taskit.config import Settings
from taskit.errors import ConfigurationError, TaskitError
from taskit.job import (
    Job,
    JobResult,
    Lease,
    LeaseState,
    Outcome,
    OutcomeKind,
    ProgressUpdate,
    QueueStats,
)
from taskit.limits import LimitSpec, LimitUsage
from taskit.workflow import WorkflowState

__all__ = [
    "Broker",
    "BrokerOptions",
    "OnceState",
]

log = logging.getLogger(__name__)


class OnceState(enum.Enum):
    """What ``Broker.begin_once`` found at a once key."""

    TAKEN = "taken"  #: it was free: the caller now holds it and does the work
    DONE = "done"  #: a run did the work and said so (``end_once`` with ``done_for``)
    HELD = "held"  #: another run holds it: its work is under way, or its worker died


class Broker(Browsing, abc.ABC):
    """Abstract base of every broker. Subclasses must be safe to share between tasks of one
    event loop; the memory broker is also safe across threads."""

    #: True for a broker whose jobs live in this process only (``memory://``): another process
    #: (a worker, ``taskit enqueue``, ``taskit info``) cannot see them, and the CLI says so.
    in_process: ClassVar[bool] = False
    #: True for a broker that runs on asyncio only (redis-py): ``taskit worker --loop trio``
    #: refuses it at once rather than failing on the first call.
    asyncio_only: ClassVar[bool] = False

    def configure(self, settings: Settings) -> None:
        """Take every option this broker was not given in its constructor (or URL) from
        ``settings``. An App calls it with its own settings when it is given the broker or
        builds it from a URL, before any other call; until then a broker uses the defaults of
        ``Settings()``. Options given explicitly always win. Raises ``ConfigurationError`` when
        a second App's settings differ from those the broker already took. The default: a broker
        that takes no settings ignores them."""

    @abc.abstractmethod
    async def enqueue(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job]:
        """Store ``jobs`` (all or none) and return them as stored.

        A job is due at ``max(job.scheduled_at, now + delays[i])`` (either may be absent); a job
        due in the future is SCHEDULED, otherwise PENDING. A job whose id already exists and is not
        finished is left as it is and returned instead (unique jobs: nothing new is enqueued).
        A finished job with that id is replaced. Raises ``SerializationError`` before storing
        anything if a job cannot be encoded, and ``CorruptJobError`` if a job of that id exists
        whose stored record is unreadable (it is never replaced unseen). Raises ``ValueError``
        (``TypeError``) before storing anything if a job's ``group`` is not valid (see "Fair
        queues" above).

        Workflows (see above): a job with ``workflow`` set is a node of that workflow, whose
        record this call creates (or extends: a workflow gains nodes later, even after it
        ended). A job with ``after`` is stored DEFERRED until its parents have ended (released
        at once if they all have: a completed parent, or any ended parent under CONTINUE; ended
        at once, as above, if one failed or was cancelled under FAIL). Each parent must be a
        job earlier in ``jobs`` or a stored job (live, or finished with its record kept) of the
        same workflow or of none (a job of none joins the workflow: its end, past or future,
        counts for its dependents). ``ValueError`` naming the job and the parent before
        anything is stored for: a job with ``after`` and no workflow, a parent unknown (never
        stored, or its record expired), of another workflow, later in ``jobs``, or the job
        itself (``taskit.dependencies.check_after`` for the rest). A job kept in place of one
        given (an unfinished job of its id, a dedup window) changes no workflow.
        """

    def enqueue_blocking(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job] | None:
        """``enqueue`` for a thread without a running event loop, blocking it: the same result
        and errors, or None when this broker has no such path (the caller then runs ``enqueue``
        on an event loop). Optional; the default has none."""
        return None

    @abc.abstractmethod
    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        """Lease up to ``count`` ready jobs, taking ``queues`` in order (all of the first queue's
        ready jobs before any of the second's).

        Due scheduled jobs are promoted first. Each job handed out becomes RUNNING with
        ``attempts`` incremented, ``started_at`` set, and a lease of ``lease`` seconds. When no job
        is ready, waits up to ``timeout`` seconds for one (0: return at once); a scheduled job that
        falls due in that time wakes the wait. Returns an empty list if none came.

        Bytes that do not decode as a job are dead-lettered by the broker with the decode error
        (they cannot be returned); the call goes on with the other jobs.

        Cancel-safe: a cancelled reserve raises the cancellation (never returns instead) and
        leaves nothing leased. A reserve called in a cancelled scope takes nothing; jobs taken in
        the same moment as the cancellation are handed back (``RELEASE``: PENDING again at once,
        attempt refunded) before it propagates. See ``_handed_over``.
        """

    @abc.abstractmethod
    async def extend(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        """Push each held lease's deadline to now + ``lease`` seconds.

        Answers, per lease: HELD, LOST (the token is no longer current: do not settle), or
        CANCELLED (``cancel`` was called on the running job: stop it and settle with CANCEL; the
        lease is still extended).
        """

    @abc.abstractmethod
    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply each outcome if its token is current; ``False`` for a stale one (nothing changes).
        A lease past its deadline still settles until ``reclaim`` has taken it over.

        Idempotent for a retry: the same outcome (token and kind) sent again after it applied
        (its reply was lost) changes nothing and is answered ``True`` again, until the job is
        leased anew. A different kind under a token already settled is stale.

        COMPLETE / FAIL / CANCEL finish the job: its record then expires after the outcome's
        ``result_ttl`` (the worker copies the job's), or the broker's result TTL when it is
        None; a TTL of 0 keeps no record at all (``get`` answers None at once, and a settle
        retried after a lost reply is answered ``False``). An outcome whose ``result_ttl`` is
        not None or seconds from 0 to ten years is answered ``False``. RETRY makes it RETRYING,
        due after ``delay``; DEAD_LETTER moves it to its queue's dead letters (no TTL: kept until
        requeued or purged); RELEASE makes it PENDING at once and refunds the attempt (shutdown,
        not failure).
        A RETRY or RELEASE of a job whose cancel was requested while it ran ends it CANCELLED.
        An applied RETRY, FAIL or DEAD_LETTER appends the attempt to the job's ``failures``
        (``taskit.job.Attempt``: its number, the lease's start, the broker's time now, the kind,
        the outcome's error and type) in the same step, the newest ``MAX_FAILURES`` kept.

        One outcome never fails the call, nor the others in it: each is checked and encoded on
        its own (``taskit._storable.storable``). An exception given as an error is stored as text
        (message, type, traceback); a result that cannot be stored makes that job FAILED with a
        ``SerializationError`` naming the problem (answered ``True``: it was settled); an outcome
        whose job id or token is not text is answered ``False``. Nothing unreadable is stored.
        """

    async def settle_and_reserve(
        self, outcomes: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
    ) -> tuple[list[bool], list[Lease]] | None:
        """``settle(outcomes)``, then ``reserve(queues, count=count, lease=lease, timeout=0)``,
        as one step where the broker can make it one (one transaction, one round trip): a worker
        that holds one job at a time settles a job and takes its next in one call. The answers
        are ``settle``'s and ``reserve``'s (an empty list: nothing ready); an error raised means
        nothing was reserved, and the outcomes applied or not as ``settle`` would have.

        Not cancel-safe as ``reserve`` is: leases taken come back even to a caller cancelled
        meanwhile (the cancellation is delivered at its next checkpoint), who then owns them and
        hands them back. ``count`` >= 1, else ``ValueError``. Optional: None (nothing done, no
        outcome applied) from a broker without such a step; the caller then calls ``settle``
        and ``reserve``. The default has none; a broker's own step answers None too in a
        subclass that overrides ``settle`` or ``reserve`` (``_steps_own``)."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        return None

    def settle_and_reserve_now(
        self, outcomes: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
    ) -> tuple[list[bool], list[Lease]] | None:
        """``settle_and_reserve`` from any thread, without an event loop, done only if it can
        be done at once: nothing to wait for (no lock another process holds, nothing queued
        before it, no round trip to a server). A worker's thread that runs ``def`` jobs one
        after another settles each and takes the next with it, without a hop to the event
        loop and back (``taskit._chain``). None: nothing was done, no outcome applied (the
        caller uses the async calls); an error raised means, as for ``settle_and_reserve``,
        nothing was reserved. ``count`` >= 1, else ``ValueError``. Optional: the default does
        nothing, and a broker's own step does nothing in a subclass that overrides ``settle``
        or ``reserve`` (``_steps_own``)."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        return None

    def _steps_own(self, owner: type[Broker]) -> bool:
        """Whether ``settle`` and ``reserve`` are ``owner``'s own, so its ``settle_and_reserve``
        may take both steps at once: a subclass or an instance that changes either (a test
        double counting or failing calls, a user's broker, a patch) must see every settle and
        reserve, so it gets None."""
        cls, given = type(self), vars(self)
        return (
            cls.settle is owner.settle
            and cls.reserve is owner.reserve
            and "settle" not in given  # nor replaced on the instance (a patch, a wrapper)
            and "reserve" not in given
        )

    @abc.abstractmethod
    async def set_progress(self, updates: Sequence[ProgressUpdate]) -> list[bool]:
        """Store each update's ``progress`` on its job, replacing the one before, if its token
        still holds the running job; ``False`` for a stale one (lease lost or settled, job gone,
        a token this broker never made): nothing changes. One call for many jobs, each update
        atomic on its own: a worker sends the latest progress of all its running jobs at once.

        The progress is shown by ``get`` (``Job.progress``), not by the leases ``reserve`` and
        ``reclaim`` hand out nor by ``dead_letters``; it stays with the job's record until that
        is deleted (a finished job's record expires, a purge, an enqueue of the same id
        replacing it), across retries and requeues, until the job reports again."""

    # -- flow control (issue 14): limits and paused queues ---------------------------------------

    @abc.abstractmethod
    async def set_limits(
        self, specs: Mapping[str, LimitSpec | None], *, only_new: bool = False
    ) -> None:
        """Store each named limit's definition (``None``: delete it), atomically for all.
        ``only_new``: keep a definition the broker already has (a worker writing its App's
        declared limits at start). Raising a concurrency (or deleting the limit, or its
        concurrency) moves the jobs held back for the slots it frees back to the front of their
        queues at once, and wakes reserves; lowering it stops new starts until the running jobs
        are under it (nothing running is stopped). ``TypeError``/``ValueError`` naming a bad
        name or a value that is not a ``LimitSpec`` or None, before anything is stored.

        How limits hold jobs (both brokers, inside their atomic reserve): a popped pending job
        whose ``Job.limits`` name a stored definition starts only if every concurrency key has
        a free slot and every rate key allows a start now (all or none). Then it holds one slot
        per concurrency key while it is leased: every settle (any kind) frees them, and a lease
        that expires keeps them through ``reclaim`` until the reclaimer settles. A job held by
        a full key is not leased and spends no attempt: it waits, PENDING, in that key's line
        (FIFO by when it was first held back) and goes back to the front of its queue when a
        slot of that key frees. A job held by a rate is not leased either: it becomes SCHEDULED,
        due when the rate allows its start (GCRA: one start every ``per / rate`` seconds, up to
        ``bucket`` at once after an idle time). A limit with no stored definition holds nothing
        back. One reserve call holds back at most a bounded number of jobs before it returns."""

    @abc.abstractmethod
    async def limit_specs(self) -> dict[str, LimitSpec]:
        """Every stored limit definition by name."""

    @abc.abstractmethod
    async def limit_usage(self, name: str, *, top: int = 10) -> LimitUsage:
        """One limit's live definition and its ``top`` (>= 1) busiest limit keys: slots held
        (running jobs) and jobs waiting in line, each largest first (ties by key). Read in one
        atomic step. ``ValueError`` for a bad name or ``top``."""

    @abc.abstractmethod
    async def pause_queue(self, queue: str) -> bool:
        """Stop handing out jobs of ``queue``, atomically for every worker: from the next
        ``reserve`` on, no job of it is leased (its jobs wait; nothing is lost). Enqueue, cancel,
        purge, settle and ``reclaim`` of expired leases go on as before; delayed jobs still fall
        due (PENDING) and wait. A reserve blocked on a paused queue is not woken to spin on it.
        ``False`` if it was paused already. ``ValueError`` for a blank name. The paused state is
        the broker's (every process sees it) and survives restarts of the workers."""

    @abc.abstractmethod
    async def resume_queue(self, queue: str) -> bool:
        """Hand out jobs of ``queue`` again, and wake reserves blocked on it at once; ``False``
        if it was not paused. ``ValueError`` for a blank name."""

    @abc.abstractmethod
    async def paused_queues(self) -> frozenset[str]:
        """The names of the paused queues."""

    # -- workflows (issue 15): dependencies between jobs ------------------------------------------

    @abc.abstractmethod
    async def workflow(self, workflow_id: str) -> WorkflowState | None:
        """The workflow's record, read in one atomic step: every node in the order it was
        enqueued, with its job's status now (its final status once it ended, also after its
        job record is gone), the parents it waits for, and its result once it ended. ``None``
        for an unknown workflow, or one whose record expired."""

    @abc.abstractmethod
    async def workflow_results(
        self, workflow_id: str, job_ids: Sequence[str]
    ) -> list[JobResult | None]:
        """The results of nodes ``job_ids`` of the workflow, in that order (``None`` for a node
        that has not ended, or is not in it): what a released job is fed (``After.feed``). One
        round trip whatever the number of ids."""

    @abc.abstractmethod
    async def cancel_workflow(self, workflow_id: str) -> int:
        """Cancel every node of the workflow that has not ended, in one atomic step: a node
        DEFERRED, PENDING, SCHEDULED or RETRYING ends CANCELLED (``error_type`` "Cancelled");
        a RUNNING one has its cancel requested (as ``cancel`` does; it ends when its worker
        settles). Answers how many nodes it cancelled or asked to stop; 0 for a workflow
        unknown, expired or ended."""

    @abc.abstractmethod
    async def reclaim(
        self, queues: Sequence[str], *, lease: float, limit: int = 100
    ) -> list[Lease]:
        """Take over up to ``limit`` jobs of ``queues`` whose lease deadline has passed.

        Each comes back under a fresh token and lease (its old token is dead from here on) and
        with ``attempts`` unchanged; the caller settles it with RETRY or DEAD_LETTER. If the caller
        dies first, the new lease expires and the job is reclaimed again: nothing is lost.
        """

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """The job with that id, or ``None`` (never existed, or its finished record expired).

        ``CorruptJobError`` (naming the job and the field) if its stored record is unreadable;
        a job whose arguments alone do not decode comes back as a stand-in with no task."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> bool:
        """Cancel a job. PENDING, SCHEDULED or RETRYING: leaves its queue, CANCELLED, ``True``.
        RUNNING: cancel requested (the worker learns it when it next extends), ``True``.
        DEFERRED (waiting for its dependencies): CANCELLED, ``True``; either way its dependents
        are handled in the same step (see Workflows above).
        A job cancelled here (or by ``reclaim``, its cancel requested) is kept for its own
        ``result_ttl``, else the broker's. Finished or unknown: nothing changes, ``False``. A
        job whose stored record is unreadable: nothing changes, ``CorruptJobError``."""

    @abc.abstractmethod
    async def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Counts per queue, for ``queues`` or for every queue the broker knows. O(1) per queue.
        DEFERRED jobs are counted in ``deferred`` of their queue, in no other count."""

    @abc.abstractmethod
    async def dead_letters(self, queue: str, *, limit: int = 100, offset: int = 0) -> list[Job]:
        """Dead-lettered jobs of ``queue``, oldest first, with their errors. Never fails on an
        unreadable record: it is listed as a stand-in (no task) whose error names the problem."""

    @abc.abstractmethod
    async def requeue_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Make dead letters PENDING again (all of ``queue``'s when ``job_ids`` is None) with
        ``attempts`` reset to 0. Returns how many were requeued; unknown ids are skipped, and so
        are dead letters whose record is unreadable (they stay, to be read and purged). A job
        keeps its error and ``failures``; its next attempt is number 1 again (``attempts``
        restarts), so its history may hold the same number twice."""

    @abc.abstractmethod
    async def purge(self, queue: str) -> int:
        """Delete ``queue``'s waiting jobs (PENDING, SCHEDULED, RETRYING); running and DEFERRED
        jobs are left. A deleted job of a workflow ends for it as CANCELLED, so its dependents
        never wait for it (see Workflows above). Returns how many were deleted."""

    @abc.abstractmethod
    async def purge_dead(self, queue: str) -> int:
        """Delete ``queue``'s dead letters. Returns how many were deleted."""

    # -- coordination between processes (scheduler claims, worker announcements) ------------------
    @abc.abstractmethod
    async def claim(self, key: str, ttl: float) -> bool:
        """Take ``key`` for ``ttl`` seconds (> 0) if nobody holds it: ``True`` for the one caller
        that took it, ``False`` while it is held. Claims are apart from jobs and queues, and
        nothing releases one early: it expires. This is how any number of schedulers agree that
        exactly one of them enqueues each due run."""

    @abc.abstractmethod
    async def begin_once(self, key: str, token: str, *, hold: float) -> OnceState:
        """One atomic step on once key ``key`` (apart from claims, jobs and queues): if it is
        free, the run ``token`` takes it for ``hold`` seconds (> 0, else ``ValueError``) and
        the answer is TAKEN; else DONE (a run marked it done and that has not expired) or HELD
        (another run holds it; nothing changes). Among concurrent callers on a free key exactly
        one is answered TAKEN. A hold nobody ends (its worker died) expires after ``hold``
        seconds: the key is free again. This is how ``taskit.once`` lets one run per key do a
        side effect."""

    @abc.abstractmethod
    async def end_once(self, key: str, token: str, *, done_for: float | None) -> bool:
        """End run ``token``'s hold on once key ``key``, in one atomic step.

        ``done_for`` None releases it: the key is freed if ``token`` holds it, else nothing
        changes. ``done_for`` seconds (> 0, else ``ValueError``) marks the work done for that
        long, so ``begin_once`` answers DONE, unless another run had already marked it done:
        the work happened, so this holds even when ``token``'s hold expired meanwhile (the key
        free, or held by another run). Answers whether ``token`` held the key when called
        (``False``: its hold had expired). Idempotent for a retry: the same call sent again
        after it applied (its reply was lost) changes nothing and gives the same answer for
        ``done_for``."""

    @abc.abstractmethod
    async def announce(self, name: str, record: bytes, *, ttl: float) -> None:
        """Say that ``name`` is alive, with ``record``, for ``ttl`` seconds (> 0, else
        ``ValueError``) on the broker's clock; a later announce of ``name`` replaces its record
        and expiry. Workers announce themselves to register, again and again to stay live."""

    @abc.abstractmethod
    async def withdraw(self, name: str) -> None:
        """Forget ``name``'s announcement now (a name not announced, or expired, is fine)."""

    @abc.abstractmethod
    async def live(self) -> dict[str, bytes]:
        """Every live announcement's record by name, in name order; expired ones are
        forgotten (on the broker's clock). This is how anyone counts who is alive."""

    # -- streams: capped, append-only logs read by consumer groups (``taskit.audit``) --------------
    # Optional: the defaults raise ``NotImplementedError``, so a broker written before streams
    # keeps working for everything else.
    async def stream_add(self, stream: str, entry: bytes, *, maxlen: int) -> str:
        """Append ``entry`` to ``stream`` (created on first use) and return its id; keep about
        the newest ``maxlen`` entries (> 0, else ``ValueError``): older ones are dropped, for
        every group, read or not. Ids are opaque text, unique within the stream."""
        raise NotImplementedError(f"{type(self).__name__} has no streams")

    async def stream_read(
        self, stream: str, group: str, consumer: str, *, count: int, claim_after: float
    ) -> list[tuple[str, bytes]]:
        """Deliver up to ``count`` (> 0) entries of ``stream`` to ``consumer`` of ``group``, as
        ``(id, entry)`` oldest first, without waiting (empty: nothing to deliver now).

        A group is made on first use, starting at the oldest entry still kept. Each entry goes
        to one consumer of a group, and stays pending until ``stream_ack``; one left pending
        for ``claim_after`` seconds (> 0, else ``ValueError``; its consumer died, or never
        acknowledged) is delivered again, to the caller, before new entries (at-least-once).
        A pending entry dropped by the length cap is never delivered again."""
        raise NotImplementedError(f"{type(self).__name__} has no streams")

    async def stream_ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge ``ids`` for ``group``: they are not delivered to it again. Answers how
        many were pending (unknown or already acknowledged ids are skipped)."""
        raise NotImplementedError(f"{type(self).__name__} has no streams")

    async def _handed_over(self, leases: list[Lease]) -> list[Lease]:
        """What a reserve returns: ``leases``, unless its caller was cancelled while they were
        taken. Then they are released (shielded) and the cancellation is raised: a job never
        goes to a caller that is gone, and never waits out a lease for nothing."""
        if not leases:
            return leases
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._release(leases)
            raise
        return leases

    async def _release(self, leases: Sequence[Lease]) -> None:
        """Hand ``leases`` back (``RELEASE``) without raising: if the broker fails now, the
        leases expire and are reclaimed (retried), so nothing is lost either way."""
        outcomes = [
            Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.RELEASE)
            for held in leases
        ]
        try:
            await self.settle(outcomes)
        except (TaskitError, OSError) as exc:
            log.warning(
                "handing back %d jobs reserved as the reserve was cancelled failed (%s): they "
                "are retried when their lease expires", len(leases), exc,
            )  # fmt: skip

    async def close(self) -> None:
        """Release connections. The broker may be used again afterwards (it reconnects)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class BrokerOptions:
    """The settings a broker uses (``names``, ``Settings`` fields), resolved by one rule: a
    value given explicitly (not None) wins; the rest come from the settings of the App the
    broker is given to, or from ``Settings()``'s defaults until then.

    ``current`` is the resolved ``Settings``. Explicit values are checked at construction like
    settings (``ConfigurationError`` naming the field).
    """

    def __init__(self, names: tuple[str, ...], **given: Any) -> None:
        self._names = names
        self._given = {name: value for name, value in given.items() if value is not None}
        self._adopted: tuple[Any, ...] | None = None
        self.current = Settings(**self._given)

    def adopt(self, settings: Settings) -> Settings:
        """Resolve against an App's ``settings``; the result becomes ``current``."""
        merged = settings.replace(**self._given)
        values = tuple(getattr(merged, name) for name in self._names)
        if self._adopted is not None and values != self._adopted:
            taken = ", ".join(
                f"{n}={a!r} (this App: {b!r})"
                for n, a, b in zip(self._names, self._adopted, values, strict=True)
                if a != b
            )
            raise ConfigurationError(
                f"this broker already took {taken} from another App's settings: give it "
                "these options explicitly to share it, or give each App its own broker"
            )
        self._adopted = values
        self.current = merged
        return merged
