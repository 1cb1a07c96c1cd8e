"""The memory broker's state and its state machine: records, heaps, counters, and the steps
that move a job between them. Every method here must be called with ``self._lock`` held;
``MemoryBroker`` (``taskit.broker.memory``) wraps them in the async Broker contract.
"""

from __future__ import annotations

import heapq
import secrets
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from taskit.broker.checks import corrupt_job
from taskit.broker.memory.fair import Turns
from taskit.broker.memory.limits import HOLD_CAP, LimitBook
from taskit.broker.memory.streams import Stream
from taskit.broker.memory.wakeup import Waiter, wake_all
from taskit.clock import Clock, FakeClock, SystemClock
from taskit.config import DEFAULT_RESULT_TTL
from taskit.errors import CorruptJobError, SerializationError
from taskit.job import (
    MAX_FAILURES,
    Attempt,
    Job,
    JobStatus,
    Lease,
    Outcome,
    OutcomeKind,
    QueueStats,
    decode_job,
    encode_job,
    utc_from_timestamp,
)

__all__ = ["WAITING", "MemoryState", "Record", "copy_job", "encode_for_store"]

WAITING = (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING)
#: The outcomes that end an attempt in a failure: each is kept in ``Job.failures``.
_FAILURES = frozenset({OutcomeKind.RETRY, OutcomeKind.FAIL, OutcomeKind.DEAD_LETTER})
#: The latest ``scheduled_at`` a datetime can show; a job due later (a delay of ``inf``, or of
#: ten thousand years) shows this and, in effect, never falls due.
_LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


@dataclass(slots=True)
class Record:
    job: Job
    seq: int
    due: float = 0.0
    token: str = ""
    #: ``"<token> <kind>"`` of the settle that ended the last lease, until the job is leased,
    #: cancelled or requeued (as the mark in the Redis broker's state).
    settled: str = ""
    deadline: float = 0.0
    #: When its current lease began (reserve or reclaim): its run time is timed from there.
    leased_at: float = 0.0
    cancel_requested: bool = False
    expires: float = 0.0
    #: The job's latest progress, encoded (``Broker.set_progress``); ``get`` alone shows it,
    #: as on Redis, where it is kept apart from the record.
    progress: bytes = b""


class MemoryState:
    """The state of one memory broker (see the module docstring)."""

    def __init__(
        self, *, clock: Clock | None = None, result_ttl: float = DEFAULT_RESULT_TTL
    ) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._result_ttl = result_ttl
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self._ready: defaultdict[str, list[tuple[int, int, str]]] = defaultdict(list)
        self._turns: defaultdict[str, Turns] = defaultdict(Turns)  # grouped ready jobs (fair)
        self._delayed: list[tuple[float, int, str]] = []
        self._leases: defaultdict[str, list[tuple[float, str, str]]] = defaultdict(list)
        self._dead: defaultdict[str, dict[str, None]] = defaultdict(dict)
        self._finished: list[tuple[float, str]] = []  # a heap: (expiry, id); TTLs differ
        self._counts: defaultdict[str, Counter[JobStatus]] = defaultdict(Counter)
        self._totals: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._seq = 0
        self._claims: dict[str, float] = {}  # key -> expiry
        self._onces: dict[str, tuple[str, float]] = {}  # once key -> ("run:"/"done:" token, expiry)
        self._onces_kept = 0  # how many were left after the last sweep of expired ones
        self._beats: dict[str, tuple[float, bytes]] = {}  # name -> (expiry, record)
        self._waiters: list[Waiter] = []
        self._streams: dict[str, Stream] = {}  # name -> stream (``streams``)
        self._limits = LimitBook()
        self._capped = False  # the last _take stopped at HOLD_CAP: more may be ready
        self._clock_driven = isinstance(self._clock, FakeClock)
        if isinstance(self._clock, FakeClock):
            self._clock.on_change(self._wake_waiters)

    # -- internals (call with the lock held) -------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _set_status(self, record: Record, status: JobStatus) -> None:
        counts = self._counts[record.job.queue]
        counts[record.job.status] -= 1
        counts[status] += 1
        record.job.status = status

    def _push_ready(self, record: Record, *, front: bool = False) -> None:
        """The one way a job becomes ready: a job of the default priority with a group waits
        for its group's turn (``Turns``); any other in its queue's heap."""
        job = record.job
        if job.group is not None and job.priority == 0:
            self._turns[job.queue].add(job.group, record.seq, job.id, front=front)
            return
        heapq.heappush(self._ready[job.queue], (-job.priority, record.seq, job.id))

    def _push_front(self, record: Record, seq: int) -> None:
        """Ready again at the front of its priority (``seq`` < 0: below every other), as on
        Redis."""
        record.seq = seq
        self._push_ready(record, front=True)

    def _unready(self, record: Record) -> None:
        """Take a pending job out of its group's turn (a heap entry is skipped when popped)."""
        job = record.job
        if job.status is JobStatus.PENDING and job.group is not None and job.priority == 0:
            turns = self._turns.get(job.queue)
            if turns is not None:
                turns.remove(job.group, job.id)

    def _pop_ready(self, queue: str) -> Record | None:
        """The next ready job of ``queue``, taken out: higher priorities first, then the default
        priority in turns over its groups (the ungrouped jobs one turn), then lower ones."""
        heap = self._ready.get(queue, [])
        turns = self._turns.get(queue)
        while True:
            while heap and self._stale(heap[0][1], heap[0][2]):
                heapq.heappop(heap)
            if not turns or (heap and heap[0][0] < 0):
                return self._records[heapq.heappop(heap)[2]] if heap else None
            turn = turns.rotate()
            if turn is None:  # the ungrouped jobs' turn
                if heap and heap[0][0] == 0:
                    return self._records[heapq.heappop(heap)[2]]
                continue
            job_id = turns.take(turn)
            record = self._records.get(job_id)
            if record is not None and record.job.status is JobStatus.PENDING:
                return record

    def _stale(self, seq: int, job_id: str) -> bool:
        record = self._records.get(job_id)
        return record is None or record.seq != seq or record.job.status is not JobStatus.PENDING

    def _schedule(self, record: Record, due: float, status: JobStatus) -> None:
        self._set_status(record, status)
        record.due = due
        record.job.scheduled_at = utc_from_timestamp(min(due, _LATEST))
        heapq.heappush(self._delayed, (due, record.seq, record.job.id))

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            due, seq, job_id = heapq.heappop(self._delayed)
            record = self._records.get(job_id)
            if record is None or record.seq != seq or record.due != due:
                continue
            if record.job.status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
                self._set_status(record, JobStatus.PENDING)
                record.seq = self._next_seq()  # due now: at the back of its priority
                self._push_ready(record)

    def _take(self, queues: Sequence[str], count: int, lease: float, now: float) -> list[Lease]:
        self._expire(now)
        self._promote(now)
        taken: list[Lease] = []
        held_back = 0  # jobs held back by their limits: the scan stops at HOLD_CAP
        for queue in queues:
            while len(taken) < count and held_back < HOLD_CAP:
                record = self._pop_ready(queue)
                if record is None:
                    break
                if record.job.limits and not self._may_start(record, now):
                    held_back += 1
                    continue
                record.job.attempts += 1
                record.job.started_at = utc_from_timestamp(now)
                self._set_status(record, JobStatus.RUNNING)
                try:
                    taken.append(self._lease(record, lease, now))
                except CorruptJobError as exc:
                    self._bury(record, exc, now)
        self._capped = held_back >= HOLD_CAP
        return taken

    def _may_start(self, record: Record, now: float) -> bool:
        """Whether a popped pending job passes its limits (it then holds its slots); if not,
        it waits in its limit key's line, or is delayed until its rate allows a start."""
        verdict, arg = self._limits.gate(record.job.id, record.job.limits, now)
        if verdict == "wait":
            self._limits.wait(record.job.id, str(arg), self._next_seq)
        elif verdict == "later":
            self._schedule(record, float(arg), JobStatus.SCHEDULED)  # type: ignore[arg-type]
        return verdict == "go"

    def _unhold(self, record: Record, *, gone: bool = False) -> None:
        """``record``'s job stops holding slots (``gone``: it also leaves any line); the
        waiting jobs that frees go back to the front of their queues, and waiters wake."""
        job = record.job
        if not job.limits:
            return
        if gone:
            freed = self._limits.forget(job.id, job.limits)
        else:
            freed = self._limits.release(job.id, job.limits)
        for job_id in freed:
            self._seq += 1
            self._push_front(self._records[job_id], -self._seq)

    def _bury(self, record: Record, exc: CorruptJobError, now: float) -> None:
        """Dead-letter a job whose stored form no longer reads back (``copy_job``), with the
        reason, rather than fail the call for every other job (as the Redis broker does)."""
        job = record.job
        record.token = ""
        self._unhold(record, gone=True)
        job.error, job.error_type, job.traceback = f"{exc}", type(exc).__name__, None
        job.failed_at = job.completed_at = utc_from_timestamp(now)
        self._set_status(record, JobStatus.DEAD_LETTER)
        self._dead[job.queue][job.id] = None
        self._ended(record, now)

    def _readable(self, record: Record) -> Job:
        """A copy of a dead letter's job, or a stand-in naming why it cannot be read."""
        try:
            return copy_job(record.job)
        except CorruptJobError as exc:
            return corrupt_job(record.job.id, record.job.queue, str(exc))

    def _lease(self, record: Record, lease: float, now: float) -> Lease:
        job = copy_job(record.job)  # first: a job that does not read back is not leased
        record.token = secrets.token_hex(16)
        record.settled = ""
        record.deadline = now + lease
        record.leased_at = now
        heapq.heappush(
            self._leases[record.job.queue], (record.deadline, record.job.id, record.token)
        )
        return Lease(job=job, token=record.token, deadline=record.deadline)

    def _held(self, job_id: str, token: str) -> Record | None:
        record = self._records.get(job_id)
        if record is None or record.token != token or record.job.status is not JobStatus.RUNNING:
            return None
        return record

    def _settled_as(self, outcome: Outcome) -> bool:
        """Whether ``outcome`` (same token, same kind) was applied already: a retried settle."""
        record = self._records.get(outcome.job_id)
        return record is not None and record.settled == f"{outcome.token} {outcome.kind.value}"

    def _apply(self, record: Record, outcome: Outcome, now: float) -> bool:
        """Apply a held job's outcome. True: it is pending again, and the caller puts it back
        at the front of its priority (``_push_front``)."""
        job = record.job
        kind = outcome.kind
        if record.cancel_requested and kind in (OutcomeKind.RETRY, OutcomeKind.RELEASE):
            kind = OutcomeKind.CANCEL  # a cancel requested while it ran wins over a rerun
        if outcome.error is not None:
            job.error, job.error_type, job.traceback = (
                outcome.error,
                outcome.error_type,
                outcome.traceback,
            )
        if kind in _FAILURES:  # the attempt's history, kept with its error (as on Redis)
            job.failures = (
                *job.failures[1 - MAX_FAILURES :],
                failed_attempt(job, kind, outcome, now),
            )
        record.token = ""
        self._unhold(record)
        if kind is OutcomeKind.COMPLETE:
            job.result = outcome.result
            self._finish(record, JobStatus.COMPLETED, now, outcome.result_ttl)
        elif kind is OutcomeKind.FAIL:
            job.result = outcome.result
            job.failed_at = utc_from_timestamp(now)
            self._finish(record, JobStatus.FAILED, now, outcome.result_ttl)
        elif kind is OutcomeKind.CANCEL:
            self._finish(record, JobStatus.CANCELLED, now, outcome.result_ttl)
        elif kind is OutcomeKind.RETRY:
            job.failed_at = utc_from_timestamp(now)
            if outcome.delay > 0:
                self._schedule(record, now + outcome.delay, JobStatus.RETRYING)
            else:
                self._set_status(record, JobStatus.PENDING)
                return True
        elif kind is OutcomeKind.DEAD_LETTER:
            job.failed_at = utc_from_timestamp(now)
            job.completed_at = utc_from_timestamp(now)
            self._set_status(record, JobStatus.DEAD_LETTER)
            self._dead[job.queue][job.id] = None
            self._ended(record, now)
        else:  # RELEASE: shutdown handed it back unrun; it is the next of its priority to run
            job.attempts = max(job.attempts - 1, 0)
            self._set_status(record, JobStatus.PENDING)
            return True
        return False

    def _finish(self, record: Record, status: JobStatus, now: float, ttl: float | None) -> None:
        """End a job; its record is kept ``ttl`` seconds (None: the broker's ``result_ttl``; 0:
        gone at the next read), as the Redis broker's done key."""
        self._set_status(record, status)
        record.job.completed_at = utc_from_timestamp(now)
        record.token = ""
        record.settled = ""  # a settle sets it after this; a cancel leaves none
        if status in (JobStatus.COMPLETED, JobStatus.FAILED):
            self._totals[record.job.queue][status.value] += 1
        record.expires = now + (self._result_ttl if ttl is None else ttl)
        heapq.heappush(self._finished, (record.expires, record.job.id))
        self._ended(record, now)

    def _ended(self, record: Record, now: float) -> None:
        """The hook every end of a job calls (finished, or dead-lettered), its record updated:
        the workflows (``workflows.WorkflowsState``) apply it to the jobs waiting for it."""

    def _drop(self, record: Record) -> None:
        """Forget a record entirely; heap entries pointing at it become stale and are skipped."""
        job = record.job
        self._unhold(record, gone=True)
        self._counts[job.queue][job.status] -= 1
        self._dead[job.queue].pop(job.id, None)
        del self._records[job.id]

    def _expire(self, now: float) -> None:
        while self._finished and self._finished[0][0] <= now:
            expires, job_id = heapq.heappop(self._finished)
            record = self._records.get(job_id)
            if record is not None and record.expires == expires:
                self._drop(record)

    def _stats(self, queue: str) -> QueueStats:
        # .get, not []: asking about a queue must not make the broker "know" it from then on.
        counts = self._counts.get(queue, Counter())
        totals = self._totals.get(queue, Counter())
        return QueueStats(
            queued=counts[JobStatus.PENDING],
            scheduled=counts[JobStatus.SCHEDULED] + counts[JobStatus.RETRYING],
            running=counts[JobStatus.RUNNING],
            completed=totals["completed"],
            failed=totals["failed"],
            dead=len(self._dead.get(queue, ())),
            deferred=counts[JobStatus.DEFERRED],
        )

    def _take_waiters(self) -> list[Waiter]:
        waiters, self._waiters = self._waiters, []
        return waiters

    def _wake_waiters(self) -> None:
        with self._lock:
            waiters = self._take_waiters()
        wake_all(waiters)


def failed_attempt(job: Job, kind: OutcomeKind, outcome: Outcome, now: float) -> Attempt:
    """The attempt ``job`` (leased, its ``attempts`` counting this run) ended by ``outcome``
    (settled as ``kind``) at ``now``."""
    ended = utc_from_timestamp(now)
    return Attempt(job.attempts, job.started_at, ended, kind, outcome.error, outcome.error_type)


def encode_for_store(job: Job) -> bytes:
    try:
        return encode_job(job)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise SerializationError(f"job {job.id!r} cannot be serialized: {exc}") from exc


def copy_job(job: Job) -> Job:
    """``job`` through its stored form (no aliasing). ``CorruptJobError`` if it no longer
    encodes and decodes back (a field was given a value of the wrong type in place)."""
    try:
        return decode_job(encode_job(job))
    except (SerializationError, TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise CorruptJobError(job.id, "job", f"does not read back: {exc}") from None
