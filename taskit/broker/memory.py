"""MemoryBroker: the whole Broker contract in-process, for development, tests and one-process apps.

Same semantics as the Redis broker (leases, fencing, priorities, delays, dead letters, result
TTL), with an injectable clock so tests can fast-forward time. Jobs are stored encoded and
decoded on the way out, so a job handed to a worker never aliases the producer's objects.
State sits behind one ``threading.Lock``: the broker may be shared by several threads and event
loops (for instance a worker loop and a sync web view).
"""

from __future__ import annotations

import heapq
import secrets
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import msgspec

from taskit.broker._wakeup import Waiter, wake_all
from taskit.broker.base import Broker
from taskit.clock import Clock, FakeClock, SystemClock
from taskit.errors import SerializationError
from taskit.job import (
    Job,
    JobStatus,
    Lease,
    LeaseState,
    Outcome,
    OutcomeKind,
    QueueStats,
    decode_job,
    encode_job,
    utc_from_timestamp,
)

__all__ = ["MemoryBroker"]

_WAITING = (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING)
#: The latest ``scheduled_at`` a datetime can show; a job due later (a delay of ``inf``, or of
#: ten thousand years) shows this and, in effect, never falls due.
_LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


@dataclass(slots=True)
class _Record:
    job: Job
    seq: int
    due: float = 0.0
    token: str = ""
    deadline: float = 0.0
    cancel_requested: bool = False
    expires: float = 0.0


class MemoryBroker(Broker):
    """In-process broker. ``result_ttl``: seconds a finished job stays readable."""

    def __init__(self, *, clock: Clock | None = None, result_ttl: float = 86400.0) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._result_ttl = result_ttl
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}
        self._ready: defaultdict[str, list[tuple[int, int, str]]] = defaultdict(list)
        self._delayed: list[tuple[float, int, str]] = []
        self._leases: defaultdict[str, list[tuple[float, str, str]]] = defaultdict(list)
        self._dead: defaultdict[str, dict[str, None]] = defaultdict(dict)
        self._finished: deque[tuple[float, str]] = deque()
        self._counts: defaultdict[str, Counter[JobStatus]] = defaultdict(Counter)
        self._totals: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._seq = 0
        self._claims: dict[str, float] = {}  # key -> expiry
        self._beats: dict[str, tuple[float, bytes]] = {}  # name -> (expiry, record)
        self._waiters: list[Waiter] = []
        self._clock_driven = isinstance(self._clock, FakeClock)
        if isinstance(self._clock, FakeClock):
            self._clock.on_change(self._wake_waiters)

    # -- producing -------------------------------------------------------------------------
    async def enqueue(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job]:
        if delays is not None and len(delays) != len(jobs):
            raise ValueError(f"got {len(delays)} delays for {len(jobs)} jobs")
        # Everything encodes and decodes back, or nothing is stored: a payload that is not
        # msgpack encodes (its bytes are copied as they are) but fails here, not halfway through.
        decoded = [decode_job(_encode(job)) for job in jobs]
        out: list[Job] = []
        with self._lock:
            now = self._clock.time()
            self._expire(now)
            for i, stored in enumerate(decoded):
                existing = self._records.get(jobs[i].id)
                if existing is not None and not existing.job.status.finished:
                    out.append(_copy(existing.job))
                    continue
                if existing is not None:
                    self._drop(existing)
                due = now + (delays[i] if delays is not None else 0.0)
                if jobs[i].scheduled_at is not None:
                    due = max(due, jobs[i].scheduled_at.timestamp())  # type: ignore[union-attr]
                job = msgspec.structs.replace(
                    stored,
                    status=JobStatus.PENDING,
                    attempts=0,
                    scheduled_at=None,
                    started_at=None,
                    completed_at=None,
                    failed_at=None,
                    result=None,
                    error=None,
                    error_type=None,
                    traceback=None,
                )
                record = _Record(job, self._next_seq())
                self._records[job.id] = record
                self._counts[job.queue][JobStatus.PENDING] += 1
                if due > now:
                    self._schedule(record, due, JobStatus.SCHEDULED)
                else:
                    self._push_ready(record)
                out.append(_copy(job))
            waiters = self._take_waiters()
        wake_all(waiters)
        return out

    # -- consuming -------------------------------------------------------------------------
    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        give_up = anyio.current_time() + max(timeout, 0.0)
        while True:
            with self._lock:
                now = self._clock.time()
                leases = self._take(queues, count, lease, now)
                remaining = give_up - anyio.current_time()
                if leases or remaining <= 0:
                    return leases
                waiter = Waiter()
                self._waiters.append(waiter)
                if self._delayed and not self._clock_driven:
                    remaining = min(remaining, max(self._delayed[0][0] - now, 0.0) + 0.001)
            try:
                await waiter.wait(remaining)
            finally:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    async def extend(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        states: list[LeaseState] = []
        with self._lock:
            now = self._clock.time()
            for held in leases:
                record = self._held(held.job.id, held.token)
                if record is None:
                    states.append(LeaseState.LOST)
                    continue
                record.deadline = now + lease
                heapq.heappush(
                    self._leases[record.job.queue], (record.deadline, record.job.id, record.token)
                )
                states.append(LeaseState.CANCELLED if record.cancel_requested else LeaseState.HELD)
        return states

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        applied: list[bool] = []
        with self._lock:
            now = self._clock.time()
            for outcome in outcomes:
                record = self._held(outcome.job_id, outcome.token)
                if record is not None:
                    self._apply(record, outcome, now)
                applied.append(record is not None)
            waiters = self._take_waiters()
        wake_all(waiters)
        return applied

    async def reclaim(
        self, queues: Sequence[str], *, lease: float, limit: int = 100
    ) -> list[Lease]:
        taken: list[Lease] = []
        with self._lock:
            now = self._clock.time()
            for queue in queues:
                heap = self._leases[queue]
                while heap and heap[0][0] <= now and len(taken) < limit:
                    deadline, job_id, token = heapq.heappop(heap)
                    record = self._held(job_id, token)
                    if record is None or record.deadline != deadline:
                        continue  # settled, re-leased or extended since: a stale heap entry
                    if record.cancel_requested:
                        self._finish(record, JobStatus.CANCELLED, now)
                        continue
                    taken.append(self._lease(record, lease, now))
        return taken

    # -- reading and admin -----------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._expire(self._clock.time())
            record = self._records.get(job_id)
            return None if record is None else _copy(record.job)

    async def cancel(self, job_id: str) -> bool:
        with self._lock:
            now = self._clock.time()
            self._expire(now)
            record = self._records.get(job_id)
            if record is None or record.job.status.finished:
                return False
            if record.job.status is JobStatus.RUNNING:
                record.cancel_requested = True
            else:
                self._finish(record, JobStatus.CANCELLED, now)
            return True

    async def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        with self._lock:
            self._promote(self._clock.time())
            names = sorted(self._counts) if queues is None else list(queues)
            return {name: self._stats(name) for name in names}

    async def dead_letters(self, queue: str, *, limit: int = 100, offset: int = 0) -> list[Job]:
        with self._lock:
            ids = list(self._dead[queue])[offset : offset + limit]
            return [_copy(self._records[i].job) for i in ids]

    async def requeue_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        with self._lock:
            dead = self._dead[queue]
            wanted = dead if job_ids is None else dict.fromkeys(job_ids)  # an id counts once
            chosen = [i for i in wanted if i in dead]
            for job_id in chosen:
                del dead[job_id]
                record = self._records[job_id]
                self._set_status(record, JobStatus.PENDING)
                record.job.attempts = 0
                record.cancel_requested = False  # a requeue is a fresh start
                record.seq = self._next_seq()
                self._push_ready(record)
            waiters = self._take_waiters()
        wake_all(waiters)
        return len(chosen)

    async def purge(self, queue: str) -> int:
        with self._lock:
            doomed = [
                r
                for r in self._records.values()
                if r.job.queue == queue and r.job.status in _WAITING
            ]
            for record in doomed:
                self._drop(record)
            return len(doomed)

    async def purge_dead(self, queue: str) -> int:
        with self._lock:
            doomed = [self._records[i] for i in self._dead[queue]]
            for record in doomed:
                self._drop(record)
            return len(doomed)

    # -- coordination ------------------------------------------------------------------------
    async def claim(self, key: str, ttl: float) -> bool:
        if not ttl > 0:
            raise ValueError(f"a claim's ttl must be > 0 seconds, got {ttl!r}")
        with self._lock:
            now = self._clock.time()
            if self._claims.get(key, now) > now:
                return False
            for old in [k for k, expiry in self._claims.items() if expiry <= now]:
                del self._claims[old]  # cheap enough: claims are few (one per schedule run)
            self._claims[key] = now + ttl
            return True

    async def heartbeat(
        self, name: str | None = None, record: bytes = b"", *, ttl: float = 0.0
    ) -> dict[str, bytes]:
        with self._lock:
            now = self._clock.time()
            if name is not None:
                if ttl > 0:
                    self._beats[name] = (now + ttl, bytes(record))
                else:
                    self._beats.pop(name, None)
            for gone in [n for n, (expiry, _) in self._beats.items() if expiry <= now]:
                del self._beats[gone]
            return {n: rec for n, (_, rec) in sorted(self._beats.items())}

    # -- internals (call with the lock held) -------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _set_status(self, record: _Record, status: JobStatus) -> None:
        counts = self._counts[record.job.queue]
        counts[record.job.status] -= 1
        counts[status] += 1
        record.job.status = status

    def _push_ready(self, record: _Record) -> None:
        heapq.heappush(
            self._ready[record.job.queue], (-record.job.priority, record.seq, record.job.id)
        )

    def _schedule(self, record: _Record, due: float, status: JobStatus) -> None:
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
                self._push_ready(record)

    def _take(self, queues: Sequence[str], count: int, lease: float, now: float) -> list[Lease]:
        self._expire(now)
        self._promote(now)
        taken: list[Lease] = []
        for queue in queues:
            heap = self._ready.get(queue)
            while heap and len(taken) < count:
                _, seq, job_id = heapq.heappop(heap)
                record = self._records.get(job_id)
                if (
                    record is None
                    or record.seq != seq
                    or record.job.status is not JobStatus.PENDING
                ):
                    continue
                record.job.attempts += 1
                record.job.started_at = utc_from_timestamp(now)
                self._set_status(record, JobStatus.RUNNING)
                taken.append(self._lease(record, lease, now))
        return taken

    def _lease(self, record: _Record, lease: float, now: float) -> Lease:
        record.token = secrets.token_hex(16)
        record.deadline = now + lease
        heapq.heappush(
            self._leases[record.job.queue], (record.deadline, record.job.id, record.token)
        )
        return Lease(job=_copy(record.job), token=record.token, deadline=record.deadline)

    def _held(self, job_id: str, token: str) -> _Record | None:
        record = self._records.get(job_id)
        if record is None or record.token != token or record.job.status is not JobStatus.RUNNING:
            return None
        return record

    def _apply(self, record: _Record, outcome: Outcome, now: float) -> None:
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
        record.token = ""
        if kind is OutcomeKind.COMPLETE:
            job.result = outcome.result
            self._finish(record, JobStatus.COMPLETED, now)
        elif kind is OutcomeKind.FAIL:
            job.result = outcome.result
            job.failed_at = utc_from_timestamp(now)
            self._finish(record, JobStatus.FAILED, now)
        elif kind is OutcomeKind.CANCEL:
            self._finish(record, JobStatus.CANCELLED, now)
        elif kind is OutcomeKind.RETRY:
            job.failed_at = utc_from_timestamp(now)
            if outcome.delay > 0:
                self._schedule(record, now + outcome.delay, JobStatus.RETRYING)
            else:
                self._set_status(record, JobStatus.PENDING)
                self._push_ready(record)
        elif kind is OutcomeKind.DEAD_LETTER:
            job.failed_at = utc_from_timestamp(now)
            job.completed_at = utc_from_timestamp(now)
            self._set_status(record, JobStatus.DEAD_LETTER)
            self._dead[job.queue][job.id] = None
        else:  # RELEASE: shutdown handed it back unrun; it keeps its place in the queue
            job.attempts = max(job.attempts - 1, 0)
            self._set_status(record, JobStatus.PENDING)
            self._push_ready(record)

    def _finish(self, record: _Record, status: JobStatus, now: float) -> None:
        self._set_status(record, status)
        record.job.completed_at = utc_from_timestamp(now)
        record.token = ""
        if status in (JobStatus.COMPLETED, JobStatus.FAILED):
            self._totals[record.job.queue][status.value] += 1
        record.expires = now + self._result_ttl
        self._finished.append((record.expires, record.job.id))

    def _drop(self, record: _Record) -> None:
        """Forget a record entirely; heap entries pointing at it become stale and are skipped."""
        job = record.job
        self._counts[job.queue][job.status] -= 1
        self._dead[job.queue].pop(job.id, None)
        del self._records[job.id]

    def _expire(self, now: float) -> None:
        while self._finished and self._finished[0][0] <= now:
            expires, job_id = self._finished.popleft()
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
        )

    def _take_waiters(self) -> list[Waiter]:
        waiters, self._waiters = self._waiters, []
        return waiters

    def _wake_waiters(self) -> None:
        with self._lock:
            waiters = self._take_waiters()
        wake_all(waiters)


def _encode(job: Job) -> bytes:
    try:
        return encode_job(job)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise SerializationError(f"job {job.id!r} cannot be serialized: {exc}") from exc


def _copy(job: Job) -> Job:
    return decode_job(encode_job(job))
