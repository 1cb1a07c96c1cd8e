"""Browsing a broker: jobs listed by state with a cursor, counts per minute, and the single-job
actions an operator takes from a dashboard. ``Browsing`` holds the methods; ``Broker`` inherits
them.

**Listings.** ``list_jobs(queue, listing)`` walks one queue's jobs in one state (``Listing``),
a page at a time. A page is one atomic read per structure it walks, never a copy of the whole
state: on Redis a page costs O(log n) in the state's size n (the ready list: one ``LPOS``, a
scan in C, to find where the last page stopped); the memory broker, for one process and tests,
sorts a live state's jobs for each page (a finished state's page reads its index). Its
``cursor`` continues the walk; ``None`` means the walk is over. A walk lists each job that stays
in the state for the whole walk exactly once; one that enters or leaves the state meanwhile may
be listed or not, never twice. Orders, by listing:

* QUEUED: ready (PENDING) jobs, held-back ones (a full limit) included, roughly in the order
  they would be reserved (the broker's own; fair turns and limits are not replayed).
* SCHEDULED and RETRYING: by due time, soonest first.
* RUNNING: by lease deadline, soonest first. A worker extends its leases while its jobs run,
  which moves them later: a running job may be listed again in a later page of the same walk
  (the one exception to exactly once).
* DEFERRED: no order (the broker's own). On Redis the walk is an ``HSCAN``, which may return
  a job twice when the hash it walks is resized during the walk (the other exception).
* COMPLETED, FAILED, CANCELLED: by end time, newest first; a job is listed while its record is
  kept (``get`` finds it), and at most the broker's ``result_ttl`` after its end (a longer
  ``Job.result_ttl`` keeps it for ``get`` only). A job kept for 0 seconds is never listed.
* DEAD: dead letters by the time they died, newest first.

Filters: ``task`` keeps the jobs of that task name; ``text`` the jobs whose ``searchable`` text
holds it (case-insensitive). A filtered page may hold fewer than ``limit`` jobs, even none, with
a cursor: the broker examined ``SCAN_BUDGET`` jobs for it and stopped; call again with the
cursor. An unreadable record is listed as a stand-in (no task) whose error names the problem,
and never fails the listing.

**Counts.** Every broker counts, per queue and per minute of its clock, the jobs enqueued and
the settles by outcome, with a histogram of run times (``RUN_TIME_BOUNDS``), kept for
``COUNTS_KEPT`` seconds. They are written as the jobs move (on Redis, in the same scripts: a
per-minute hash with an expiry), never recomputed by scanning.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Sequence
from typing import Any

import msgspec

from taskit.job import Job, JobStatus

__all__ = [
    "COUNTS_KEPT",
    "MAX_PAGE",
    "RUN_TIME_BOUNDS",
    "SCAN_BUDGET",
    "Browsing",
    "Counts",
    "JobPage",
    "Listing",
    "check_page",
    "make_cursor",
    "matches",
    "quantile",
    "read_cursor",
    "searchable",
]

#: How long a broker keeps its per-minute counts, in seconds (one day).
COUNTS_KEPT = 86_400
#: Upper bounds (seconds) of the run-time histogram's buckets; a last bucket takes the rest,
#: so ``Counts.runs`` has ``len(RUN_TIME_BOUNDS) + 1`` entries.
RUN_TIME_BOUNDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
)  # fmt: skip
#: Most jobs one ``list_jobs`` call examines when filtering (it stops there with a cursor).
SCAN_BUDGET = 2_000
#: Largest ``limit`` of one ``list_jobs`` page.
MAX_PAGE = 1_000


class Listing(enum.StrEnum):
    """Which of a queue's jobs ``list_jobs`` walks: one state each."""

    QUEUED = "queued"  #: PENDING: ready, or held back by a full limit
    SCHEDULED = "scheduled"  #: SCHEDULED: waiting for their ``scheduled_at``
    RETRYING = "retrying"  #: RETRYING: waiting for their next attempt
    RUNNING = "running"  #: RUNNING: leased to a worker
    DEFERRED = "deferred"  #: DEFERRED: waiting for the jobs they depend on
    COMPLETED = "completed"  #: ended COMPLETED, record still kept
    FAILED = "failed"  #: ended FAILED, record still kept
    CANCELLED = "cancelled"  #: ended CANCELLED, record still kept
    DEAD = "dead"  #: dead letters (DEAD_LETTER)

    @property
    def status(self) -> JobStatus:
        """The job status this listing walks."""
        return _STATUS[self]


_STATUS = {
    Listing.QUEUED: JobStatus.PENDING,
    Listing.SCHEDULED: JobStatus.SCHEDULED,
    Listing.RETRYING: JobStatus.RETRYING,
    Listing.RUNNING: JobStatus.RUNNING,
    Listing.DEFERRED: JobStatus.DEFERRED,
    Listing.COMPLETED: JobStatus.COMPLETED,
    Listing.FAILED: JobStatus.FAILED,
    Listing.CANCELLED: JobStatus.CANCELLED,
    Listing.DEAD: JobStatus.DEAD_LETTER,
}


class JobPage(msgspec.Struct, frozen=True):
    """One page of a listing. ``cursor``: pass it to the next call; ``None``: the walk is over.
    ``scanned``: how many jobs the broker examined for this page (filters drop some)."""

    jobs: list[Job]
    cursor: str | None
    scanned: int


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """What happened in one queue during one minute of the broker's clock.

    ``enqueued``: jobs stored by ``enqueue`` (a duplicate of a kept job is not). ``completed``,
    ``failed``, ``retried``, ``dead``, ``cancelled``: settles with outcome COMPLETE, FAIL, RETRY,
    DEAD_LETTER, CANCEL (jobs ended another way, such as a cancel before they ran, are not
    counted). ``runs``: how many of those settles' attempts ran, from reserve (or reclaim) to
    settle on the broker's clock, within each bucket of ``RUN_TIME_BOUNDS`` (bucket ``i``:
    above bound ``i - 1``, up to bound ``i``; the last: above every bound)."""

    minute: int  #: the minute's start, seconds since the epoch (a multiple of 60)
    queue: str
    enqueued: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    runs: tuple[int, ...] = (0,) * (len(RUN_TIME_BOUNDS) + 1)


def check_page(limit: int, cursor: str | None) -> None:
    """``ValueError`` for a ``limit`` outside 1..``MAX_PAGE`` or an empty cursor."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"list_jobs: limit must be an int from 1 to {MAX_PAGE}, got {limit!r}")
    if cursor is not None and (not isinstance(cursor, str) or not cursor):
        raise ValueError(f"list_jobs: cursor must be a cursor a page returned, got {cursor!r}")


def make_cursor(listing: Listing, queue: str, place: Sequence[Any]) -> str:
    """A ``list_jobs`` cursor: where a walk of ``queue``'s ``listing`` stopped (``place``, the
    broker's own sort key of the last job listed), bound to that queue and listing."""
    raw = msgspec.msgpack.encode([listing.value, queue, *place])
    return base64.urlsafe_b64encode(raw).decode("ascii")


def read_cursor(cursor: str, queue: str, listing: Listing, place: Any) -> tuple[Any, ...]:
    """The place a ``make_cursor`` cursor continues from, decoded as ``place`` (a tuple type of
    the broker's sort key); ``ValueError`` naming a cursor not made for ``queue`` and
    ``listing``, or not made by ``make_cursor`` with that key."""
    try:
        raw = base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True)
        made, for_queue, *rest = msgspec.msgpack.decode(raw, type=list[Any])
        made, for_queue = msgspec.convert([made, for_queue], type=tuple[str, str])
        key: tuple[Any, ...] = msgspec.convert(rest, type=place)
    except (UnicodeEncodeError, binascii.Error, msgspec.DecodeError, ValueError):
        raise ValueError(f"list_jobs: cursor {cursor!r} is not one a page returned") from None
    if (made, for_queue) != (listing.value, queue):
        raise ValueError(
            f"list_jobs: cursor {cursor!r} continues the {made} listing of queue "
            f"{for_queue!r}, not the {listing.value} listing of {queue!r}"
        )
    return key


def searchable(job: Job) -> str:
    """The text ``list_jobs(text=...)`` searches: the job's id, task, its arguments as JSON
    and its error, lower-cased. Arguments that do not decode count as their repr."""
    try:
        args = json.dumps(msgspec.msgpack.decode(job.payload), default=repr, ensure_ascii=False)
    except (msgspec.DecodeError, TypeError, ValueError):
        args = repr(bytes(job.payload))
    return "\n".join((job.id, job.task, args, job.error or "")).lower()


def matches(job: Job, task: str | None, text: str | None) -> bool:
    """Whether ``job`` passes ``list_jobs``' filters (``text`` already lower-cased or not)."""
    if task is not None and job.task != task:
        return False
    return text is None or text.lower() in searchable(job)


def quantile(runs: Sequence[int], q: float) -> float | None:
    """Estimate the ``q`` quantile (0 < q < 1) of run times from a ``Counts.runs`` histogram
    (several summed), interpolating inside its bucket; ``None`` for an empty histogram. The
    last, open bucket answers its lower bound."""
    total = sum(runs)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(runs):
        if n and seen + n >= rank:
            low = RUN_TIME_BOUNDS[i - 1] if i else 0.0
            if i >= len(RUN_TIME_BOUNDS):
                return low
            return low + (RUN_TIME_BOUNDS[i] - low) * max(0.0, rank - seen) / n
        seen += n
    return RUN_TIME_BOUNDS[-1]  # not reached: the loop ends at the bucket holding the rank


class Browsing:
    """The browsing part of the ``Broker`` contract (see the module docstring). A broker that
    does not implement it raises ``NotImplementedError`` naming itself; the memory and Redis
    brokers implement all of it."""

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
        """One page of ``queue``'s jobs in the state ``listing`` (see the module docstring), at
        most ``limit`` (1..``MAX_PAGE``) jobs, from ``cursor`` (``None``: the start).
        ``ValueError`` for a bad limit, or a cursor this broker did not make for this queue
        and listing. An unknown queue lists nothing."""
        raise NotImplementedError(f"{type(self).__name__} cannot list jobs")

    async def counts(
        self, since: float, until: float | None = None, queues: Sequence[str] | None = None
    ) -> list[Counts]:
        """The counts of each minute starting at or after ``since`` and before ``until``
        (``None``: now), for ``queues`` (``None``: all), ordered by minute then queue. Minutes
        and queues with nothing counted are left out, and so are minutes older than
        ``COUNTS_KEPT``."""
        raise NotImplementedError(f"{type(self).__name__} keeps no counts")

    async def promote(self, job_id: str) -> bool:
        """Make a SCHEDULED or RETRYING job ready now: PENDING at the back of its queue (for
        its priority; a grouped job in its group), reserves of its queue woken; ``True``. Any
        other state, or unknown: nothing changes, ``False``. ``CorruptJobError`` for a record
        that does not decode."""
        raise NotImplementedError(f"{type(self).__name__} cannot promote jobs")

    async def forget(self, job_ids: Sequence[str]) -> int:
        """Delete the kept records of the finished jobs (COMPLETED, FAILED, CANCELLED) and the
        dead letters among ``job_ids``, in one atomic step: ``get`` no longer finds them and no
        listing shows them. Live jobs (waiting, running, deferred) and unknown ids are skipped.
        Workflows keep their nodes' results. Answers how many were deleted."""
        raise NotImplementedError(f"{type(self).__name__} cannot forget jobs")

    async def stream_tail(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, bytes]]:
        """Read ``stream`` (``Broker.stream_add``) without a group, oldest first: the entries
        after id ``after``, at most ``count`` (> 0, else ``ValueError``); with ``after`` None,
        the newest ``count`` entries. Nothing is delivered or acknowledged: any number of
        readers (dashboards) follow a stream so. A stream never written reads empty."""
        raise NotImplementedError(f"{type(self).__name__} has no streams")
