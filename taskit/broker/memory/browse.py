"""The memory broker's browsing (``taskit.broker.browse``): listings by state with a cursor,
per-minute counts, ``promote``, ``forget`` and ``stream_tail``.

``BrowseState`` keeps, beside the state it extends, the ids of each queue's live jobs per status
(fed by ``_set_status``, the one way a job's status changes), an ``EndIndex`` of the jobs that
ended (fed by ``_ended``, which every end calls: settle, cancel, a workflow's cascade, a dead
letter), and ``MinuteCounts`` (fed by ``_place``, which every stored job passes, and
``_apply``, every applied settle, its run timed from its lease's start: ``Record.leased_at``,
set by reserve and by reclaim). A live listing's page sorts that status's ids of the queue by
the listing's order (``heapq.nsmallest``: O(n log limit) in the jobs of the state, which is fine
in one process); a finished or dead one walks the index from its cursor, newest first.

A cursor is the last listed job's place in its listing's order, with the listing and queue it
belongs to: msgpack ``[listing, queue, a, b, id]``, base64 (url-safe). A job staying in the
state keeps its place, so a walk lists it once; ids break ties. (A RUNNING job's place is its
lease deadline, which ``extend`` moves later: one extended during a walk may come again.)
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import islice

from taskit.broker.browse import (
    SCAN_BUDGET,
    Counts,
    JobPage,
    Listing,
    check_page,
    make_cursor,
    matches,
    read_cursor,
)
from taskit.broker.memory.ended import EndIndex, MinuteCounts
from taskit.broker.memory.state import Record, copy_job
from taskit.broker.memory.wakeup import wake_all
from taskit.broker.memory.workflows import WorkflowsState
from taskit.clock import Clock
from taskit.config import DEFAULT_RESULT_TTL
from taskit.job import Job, JobStatus, Outcome, OutcomeKind, decode_progress

__all__ = ["BrowseState"]

_ENDED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.DEAD_LETTER)
_PROMOTABLE = (JobStatus.SCHEDULED, JobStatus.RETRYING)
_COUNTED = {
    OutcomeKind.COMPLETE: "completed",
    OutcomeKind.FAIL: "failed",
    OutcomeKind.RETRY: "retried",
    OutcomeKind.DEAD_LETTER: "dead",
    OutcomeKind.CANCEL: "cancelled",
}
# A job's place in its listing's order: two numbers, then its id.
_Place = tuple[float, float, str]


class BrowseState(WorkflowsState):
    """The browsing half of ``MemoryBroker`` (see the module docstring)."""

    def __init__(
        self, *, clock: Clock | None = None, result_ttl: float = DEFAULT_RESULT_TTL
    ) -> None:
        super().__init__(clock=clock, result_ttl=result_ttl)
        self._by_status: defaultdict[tuple[str, JobStatus], dict[str, None]] = defaultdict(dict)
        self._ended_index = EndIndex()
        self._minutes = MinuteCounts()

    # -- the contract ---------------------------------------------------------------------------
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
        listing = Listing(listing)
        after = None if cursor is None else _place_of(cursor, queue, listing)
        filtered = task is not None or text is not None
        budget = SCAN_BUDGET if filtered else limit
        jobs: list[Job] = []
        scanned = 0
        last: _Place | None = None
        with self._lock:
            now = self._clock.time()
            self._expire(now)
            self._promote(now)
            found = self._in_order(queue, listing, after, budget + 1, now)
            for place, record in found[:budget]:
                scanned += 1
                last = place
                job = self._shown(record)
                if not filtered or matches(job, task, text):
                    jobs.append(job)
                    if len(jobs) == limit:
                        break
        page_cursor = None
        if last is not None and len(found) > scanned:  # jobs after the last examined
            page_cursor = make_cursor(listing, queue, last)
        return JobPage(jobs, page_cursor, scanned)

    async def counts(
        self, since: float, until: float | None = None, queues: Sequence[str] | None = None
    ) -> list[Counts]:
        with self._lock:
            return self._minutes.read(since, until, queues, self._clock.time())

    async def promote(self, job_id: str) -> bool:
        with self._lock:
            now = self._clock.time()
            self._expire(now)
            self._promote(now)
            record = self._records.get(job_id)
            if record is None or record.job.status not in _PROMOTABLE:
                return False
            copy_job(record.job)  # CorruptJobError for a record that does not read back
            self._set_status(record, JobStatus.PENDING)
            record.seq = self._next_seq()  # at the back; its delayed entry is stale from now
            self._push_ready(record)
            waiters = self._take_waiters()
        wake_all(waiters)
        return True

    async def forget(self, job_ids: Sequence[str]) -> int:
        with self._lock:
            self._expire(self._clock.time())
            doomed = [
                record
                for record in (self._records.get(job_id) for job_id in dict.fromkeys(job_ids))
                if record is not None and record.job.status in _ENDED
            ]
            for record in doomed:
                self._drop(record)  # a workflow keeps its node's result in its own record
            return len(doomed)

    async def stream_tail(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, bytes]]:
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ValueError(f"stream_tail: count must be an int > 0, got {count!r}")
        with self._lock:
            found = self._streams.get(stream)
            return [] if found is None else found.tail(after, count)

    # -- listings (call with the lock held) ------------------------------------------------------
    def _in_order(
        self, queue: str, listing: Listing, after: _Place | None, count: int, now: float
    ) -> list[tuple[_Place, Record]]:
        """Up to ``count`` of ``queue``'s jobs in ``listing``, in its order, past ``after``."""
        status = listing.status
        if status in _ENDED:
            return list(islice(self._ended_in_order(queue, status, after, now), count))
        ids = self._by_status.get((queue, status), {})
        places = (self._place_in(listing, self._records[job_id]) for job_id in ids)
        chosen = heapq.nsmallest(count, places if after is None else _past(places, after))
        return [(place, self._records[place[2]]) for place in chosen]

    def _ended_in_order(
        self, queue: str, status: JobStatus, after: _Place | None, now: float
    ) -> Iterable[tuple[_Place, Record]]:
        below = None if after is None else int(-after[0])
        kept_since = now - self._result_ttl  # listed at most the broker's TTL after their end
        for number, ended, job_id in self._ended_index.walk(queue, status, below):
            record = self._records.get(job_id)
            if record is None or record.job.status is not status:
                continue  # cannot happen: leaving the status removes the entry
            if status is not JobStatus.DEAD_LETTER and ended <= kept_since:
                break  # every older entry ended earlier still
            yield (float(-number), 0.0, job_id), record

    @staticmethod
    def _place_in(listing: Listing, record: Record) -> _Place:
        job = record.job
        if listing is Listing.QUEUED:  # as reserved: higher priorities first, then FIFO
            return (float(-job.priority), float(record.seq), job.id)
        if listing is Listing.RUNNING:
            return (record.deadline, 0.0, job.id)
        if listing is Listing.DEFERRED:
            return (float(record.seq), 0.0, job.id)
        return (record.due, float(record.seq), job.id)  # SCHEDULED, RETRYING: by due time

    def _shown(self, record: Record) -> Job:
        """What ``get`` shows of the record; a stand-in for one that does not read back."""
        job = self._readable(record)
        if record.progress and job.task:
            job.progress = decode_progress(record.progress)
        return job

    # -- the hooks that feed the books (call with the lock held) -------------------------------
    def _set_status(self, record: Record, status: JobStatus) -> None:
        job = record.job
        self._unlisted(job)
        if job.status in _ENDED:
            self._ended_index.remove(job.id)
        super()._set_status(record, status)
        if status not in _ENDED:
            self._by_status[(job.queue, status)][job.id] = None

    def _place(self, record: Record, due: float, now: float) -> None:
        job = record.job
        self._by_status[(job.queue, job.status)][job.id] = None  # stored PENDING
        self._minutes.add(now, job.queue, "enqueued")
        super()._place(record, due, now)

    def _apply(self, record: Record, outcome: Outcome, now: float) -> bool:
        job = record.job
        kind = outcome.kind
        if record.cancel_requested and kind in (OutcomeKind.RETRY, OutcomeKind.RELEASE):
            kind = OutcomeKind.CANCEL  # as ``_apply`` settles it
        counted = _COUNTED.get(kind)
        if counted is not None:
            self._minutes.add(now, job.queue, counted, now - record.leased_at)
        return super()._apply(record, outcome, now)

    def _ended(self, record: Record, now: float) -> None:
        job = record.job
        dead = job.status is JobStatus.DEAD_LETTER
        if dead or record.expires > now:  # a job kept for no time is never listed
            self._ended_index.add(job.queue, job.status, job.id, now)
            if not dead:
                self._ended_index.trim(job.queue, job.status, now - self._result_ttl)
        super()._ended(record, now)

    def _unlisted(self, job: Job) -> None:
        ids = self._by_status.get((job.queue, job.status))
        if ids is not None:
            ids.pop(job.id, None)

    def _drop(self, record: Record) -> None:
        job = record.job
        self._unlisted(job)
        self._ended_index.remove(job.id)
        super()._drop(record)


def _past(places: Iterable[_Place], after: _Place) -> Iterable[_Place]:
    return (place for place in places if place > after)


def _place_of(cursor: str, queue: str, listing: Listing) -> _Place:
    return read_cursor(cursor, queue, listing, _Place)
