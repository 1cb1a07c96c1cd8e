"""MemoryBroker: the whole Broker contract in-process, for development, tests and one-process apps.

Same semantics as the Redis broker (leases, fencing, priorities, delays, dead letters, result
TTL), with an injectable clock so tests can fast-forward time. Jobs are stored encoded and
decoded on the way out, so a job handed to a worker never aliases the producer's objects.
State sits behind one ``threading.Lock``: the broker may be shared by several threads and event
loops (for instance a worker loop and a sync web view).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence

import anyio
import anyio.lowlevel
import msgspec

from taskit._storable import storable
from taskit.broker.base import Broker, BrokerOptions, OnceState
from taskit.broker.checks import check_specs, check_stream, check_usage
from taskit.broker.memory.browse import BrowseState
from taskit.broker.memory.state import WAITING, Record, copy_job, encode_for_store
from taskit.broker.memory.streams import Stream
from taskit.broker.memory.wakeup import Waiter, wake_all
from taskit.clock import Clock
from taskit.config import MAX_SECONDS, Settings
from taskit.errors import CorruptJobError
from taskit.fairness import check_groups
from taskit.job import (
    LIVE_FIELDS,
    Job,
    JobStatus,
    Lease,
    LeaseState,
    Outcome,
    ProgressUpdate,
    QueueStats,
    decode_job,
    decode_progress,
    encode_progress,
    kept_job,
)
from taskit.limits import LimitSpec, LimitUsage

__all__ = ["MemoryBroker"]


class MemoryBroker(BrowseState, Broker):
    """In-process broker: its jobs live and die with this process (``in_process``).

    ``result_ttl``: seconds a finished job stays readable (``math.inf``: for ever); None (the
    default): the App's ``result_ttl`` setting (``TASKIT_RESULT_TTL``), see
    ``Broker.configure``. ``clock`` (default: the system clock) is what delays, leases and
    result TTLs are judged by; a ``FakeClock`` lets tests move time by hand. Raises
    ``ConfigurationError`` for a bad ``result_ttl``.
    """

    in_process = True

    def __init__(self, *, clock: Clock | None = None, result_ttl: float | None = None) -> None:
        # ``inf`` (finished jobs never expire) is one value memory can keep and Redis cannot, so
        # it is outside the setting's range: checked here, and held as given.
        self._forever = result_ttl == math.inf
        given = MAX_SECONDS if self._forever else result_ttl
        self._options = BrokerOptions(("result_ttl",), result_ttl=given)
        super().__init__(clock=clock, result_ttl=self._ttl(self._options.current))

    def configure(self, settings: Settings) -> None:
        self._result_ttl = self._ttl(self._options.adopt(settings))

    def _ttl(self, settings: Settings) -> float:
        return math.inf if self._forever else settings.result_ttl

    # -- producing -------------------------------------------------------------------------
    async def enqueue(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job]:
        if delays is not None and len(delays) != len(jobs):
            raise ValueError(f"got {len(delays)} delays for {len(jobs)} jobs")
        check_groups(jobs)
        # Everything encodes and decodes back, or nothing is stored: a payload that is not
        # msgpack encodes (its bytes are copied as they are) but fails here, not halfway through.
        decoded = [decode_job(encode_for_store(job)) for job in jobs]
        out: list[Job] = []
        with self._lock:
            now = self._clock.time()
            self._expire(now)
            for job in jobs:  # an unreadable job of that id: CorruptJobError, nothing stored
                existing = self._records.get(job.id)
                if existing is not None and not existing.job.status.finished:
                    copy_job(existing.job)
            self._check_workflows(jobs, now)  # ValueError naming a bad parent: nothing stored
            for i, stored in enumerate(decoded):
                existing = self._records.get(jobs[i].id)
                if existing is not None and not existing.job.status.finished:
                    out.append(kept_job(copy_job(existing.job)))
                    continue
                delay = delays[i] if delays is not None else 0.0
                if stored.dedup is not None:
                    if stored.dedup.mode == "debounce":
                        delay = max(delay, stored.dedup.window)
                    kept = self._deduped(stored, now, delay)
                    if kept is not None:
                        out.append(kept)
                        continue
                if existing is not None:
                    self._drop(existing)
                due = now + delay
                if jobs[i].scheduled_at is not None:
                    due = max(due, jobs[i].scheduled_at.timestamp())  # type: ignore[union-attr]
                job = msgspec.structs.replace(stored, **LIVE_FIELDS)  # where it stands: afresh
                record = Record(job, self._next_seq())
                self._records[job.id] = record
                self._counts[job.queue][JobStatus.PENDING] += 1
                self._place(record, due, now)  # its workflow's node; DEFERRED while it waits
                if job.dedup is not None:  # its key's window starts (a debounce's: until due)
                    end = now + job.dedup.window if job.dedup.mode == "throttle" else due
                    self._windows.start(job.dedup.key, job.id, end, now)
                out.append(copy_job(job))
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
        await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller takes nothing
        while True:
            waiter: Waiter | None = None
            with self._lock:  # one lock for taking and waiting: no enqueue slips in between
                now = self._clock.time()
                open_queues = [q for q in queues if q not in self._paused]
                leases = self._take(open_queues, count, lease, now)
                remaining = give_up - anyio.current_time()
                if not leases and self._capped:
                    continue  # it stopped looking past held-back jobs: look again at once
                if not leases and remaining > 0:
                    waiter = Waiter()
                    self._waiters.append(waiter)
                    if self._delayed and not self._clock_driven:
                        remaining = min(remaining, max(self._delayed[0][0] - now, 0.0) + 0.001)
            if waiter is None:
                # Woken and cancelled at once: what was just taken goes back, then the cancel.
                return await self._handed_over(leases)
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
        # Each checked and copied alone, before the lock: what cannot be stored fails its own
        # job (see ``storable``) and never enters the state, where it would break every read.
        checked = [storable(outcome) for outcome in outcomes]
        with self._lock:
            applied = self._settle_checked(checked)
            waiters = self._take_waiters()
        wake_all(waiters)
        return applied

    async def settle_and_reserve(
        self, outcomes: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
    ) -> tuple[list[bool], list[Lease]] | None:
        """Under one hold of the lock: no other call sees the state between the two."""
        return self._step(outcomes, queues, count, lease)

    def settle_and_reserve_now(
        self, outcomes: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
    ) -> tuple[list[bool], list[Lease]] | None:
        """The same from any thread (its lock is held only for the step's few operations)."""
        return self._step(outcomes, queues, count, lease)

    def _step(
        self, outcomes: Sequence[Outcome], queues: Sequence[str], count: int, lease: float
    ) -> tuple[list[bool], list[Lease]] | None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if not self._steps_own(MemoryBroker):
            return None
        checked = [storable(outcome) for outcome in outcomes]
        with self._lock:
            applied = self._settle_checked(checked)
            open_queues = [q for q in queues if q not in self._paused]
            leases = self._take(open_queues, count, lease, self._clock.time())
            waiters = self._take_waiters()
        wake_all(waiters)
        return applied, leases

    def _settle_checked(self, checked: list[tuple[Outcome, bytes] | None]) -> list[bool]:
        """``settle``'s work, under the lock: each outcome as ``storable`` made it."""
        applied: list[bool] = []
        now = self._clock.time()
        fronts: list[Record] = []  # ready again, at the front of their priority
        for given in checked:
            outcome = None if given is None else given[0]
            record = None if outcome is None else self._held(outcome.job_id, outcome.token)
            if outcome is not None and record is not None:
                if self._apply(record, outcome, now):
                    fronts.append(record)
                record.settled = f"{outcome.token} {outcome.kind.value}"
            applied.append(
                record is not None or (outcome is not None and self._settled_as(outcome))
            )
        # In the order they were reserved, ahead of every waiting job (as on Redis).
        fronts.sort(key=lambda r: r.seq)
        self._seq += len(fronts)
        for i, record in reversed(list(enumerate(fronts))):  # last first, as on Redis
            self._push_front(record, i - self._seq)
        return applied

    async def set_progress(self, updates: Sequence[ProgressUpdate]) -> list[bool]:
        encoded = [encode_progress(update.progress) for update in updates]  # before the lock
        with self._lock:
            stored = []
            for update, progress in zip(updates, encoded, strict=True):
                record = self._held(update.job_id, update.token)
                if record is not None:
                    record.progress = progress
                stored.append(record is not None)
            return stored

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
                        self._unhold(record)
                        self._finish(record, JobStatus.CANCELLED, now, record.job.result_ttl)
                        continue
                    try:
                        taken.append(self._lease(record, lease, now))
                    except CorruptJobError as exc:
                        self._bury(record, exc, now)
            waiters = self._take_waiters()  # an end may have released waiting jobs
        wake_all(waiters)
        return taken

    # -- limits ------------------------------------------------------------------------------
    async def set_limits(
        self, specs: Mapping[str, LimitSpec | None], *, only_new: bool = False
    ) -> None:
        checked = check_specs(specs)
        with self._lock:
            for job_id in self._limits.set(checked, only_new=only_new):
                self._seq += 1
                self._push_front(self._records[job_id], -self._seq)
            waiters = self._take_waiters()
        wake_all(waiters)

    async def limit_specs(self) -> dict[str, LimitSpec]:
        with self._lock:
            return dict(self._limits.specs)

    async def limit_usage(self, name: str, *, top: int = 10) -> LimitUsage:
        check_usage(name, top)
        with self._lock:
            return self._limits.usage(name, top)

    # -- reading and admin -----------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._expire(self._clock.time())
            record = self._records.get(job_id)
            if record is None:
                return None
            job, progress = copy_job(record.job), record.progress
        if progress:
            job.progress = decode_progress(progress)
        return job

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
                self._unready(record)
                self._unhold(record, gone=True)
                self._finish(record, JobStatus.CANCELLED, now, record.job.result_ttl)
            waiters = self._take_waiters()  # its end may have released waiting jobs
        wake_all(waiters)
        return True

    async def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        with self._lock:
            self._promote(self._clock.time())
            names = sorted(self._counts) if queues is None else list(queues)
            return {name: self._stats(name) for name in names}

    async def dead_letters(self, queue: str, *, limit: int = 100, offset: int = 0) -> list[Job]:
        with self._lock:
            ids = list(self._dead[queue])[offset : offset + limit]
            return [self._readable(self._records[i]) for i in ids]

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
                record.settled = ""
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
                if r.job.queue == queue and r.job.status in WAITING
            ]
            for record in doomed:
                self._drop(record)
            self._turns.pop(queue, None)
            self._purged(doomed, self._clock.time())  # they end CANCELLED for their workflows
            waiters = self._take_waiters()
        wake_all(waiters)
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

    async def begin_once(self, key: str, token: str, *, hold: float) -> OnceState:
        if not hold > 0:
            raise ValueError(f"a once key's hold must be > 0 seconds, got {hold!r}")
        with self._lock:
            held = self._once_value(key)
            if held is None:
                self._onces[key] = ("run:" + token, self._clock.time() + hold)
                return OnceState.TAKEN
            return OnceState.DONE if held.startswith("done:") else OnceState.HELD

    async def end_once(self, key: str, token: str, *, done_for: float | None) -> bool:
        if done_for is not None and not done_for > 0:
            raise ValueError(f"a once key's done_for must be > 0 seconds, got {done_for!r}")
        running, finished = "run:" + token, "done:" + token
        with self._lock:
            held = self._once_value(key)
            if done_for is None:
                if held == running:
                    del self._onces[key]
                return held == running
            if held == finished:
                return True
            if held is None or not held.startswith("done:"):
                self._onces[key] = (finished, self._clock.time() + done_for)
            return held == running

    def _once_value(self, key: str) -> str | None:
        """What once key ``key`` holds now (None: free); forgets expired keys, all of them
        whenever their number has doubled since the last sweep (amortised O(1) a call)."""
        now = self._clock.time()
        if len(self._onces) > 2 * self._onces_kept + 64:
            for old in [k for k, (_, expiry) in self._onces.items() if expiry <= now]:
                del self._onces[old]
            self._onces_kept = len(self._onces)
        value, expiry = self._onces.get(key, ("", now))
        if expiry <= now:
            self._onces.pop(key, None)
            return None
        return value

    async def announce(self, name: str, record: bytes, *, ttl: float) -> None:
        if not ttl > 0:
            raise ValueError(f"an announcement's ttl must be > 0 seconds, got {ttl!r}")
        with self._lock:
            self._forget_expired()
            self._beats[name] = (self._clock.time() + ttl, bytes(record))

    async def withdraw(self, name: str) -> None:
        with self._lock:
            self._beats.pop(name, None)

    async def live(self) -> dict[str, bytes]:
        with self._lock:
            self._forget_expired()
            return {n: rec for n, (_, rec) in sorted(self._beats.items())}

    # -- streams ---------------------------------------------------------------------------
    async def stream_add(self, stream: str, entry: bytes, *, maxlen: int) -> str:
        check_stream(maxlen=maxlen)
        with self._lock:
            return self._streams.setdefault(stream, Stream()).add(entry, maxlen)

    async def stream_read(
        self, stream: str, group: str, consumer: str, *, count: int, claim_after: float
    ) -> list[tuple[str, bytes]]:
        check_stream(count=count, claim_after=claim_after)
        with self._lock:
            found = self._streams.setdefault(stream, Stream())
            return found.read(group, count, claim_after, self._clock.time())

    async def stream_ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        with self._lock:
            found = self._streams.get(stream)
            return 0 if found is None else found.ack(group, ids)

    def _forget_expired(self) -> None:
        """Drop announcements whose expiry has passed (call with the lock held)."""
        now = self._clock.time()
        for gone in [n for n, (expiry, _) in self._beats.items() if expiry <= now]:
            del self._beats[gone]
