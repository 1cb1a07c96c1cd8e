"""The memory broker's books for browsing (``taskit.broker.browse``): the jobs that ended, per
queue and end status in the order they ended (``EndIndex``), and the per-minute counts
(``MinuteCounts``). Plain data structures: call them with the broker's lock held; times are on
the broker's clock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence

from taskit.broker.browse import COUNTS_KEPT, RUN_TIME_BOUNDS, Counts
from taskit.job import JobStatus

__all__ = ["COUNTED", "EndIndex", "MinuteCounts"]

#: The fields of ``Counts`` a ``MinuteCounts`` adds to, by name (``runs`` apart).
COUNTED = ("enqueued", "completed", "failed", "retried", "dead", "cancelled")

# An index entry: (its number, end time, job id). Numbers grow, so each list is sorted.
_Entry = tuple[int, float, str]


class EndIndex:
    """Per (queue, end status), the ids of the jobs that ended so, oldest first, each under a
    number that grows with every end. ``add`` supersedes a job's older entry (a requeued dead
    letter that dies again is listed once, where it died last); ``remove`` drops a job's entry
    (forgotten, expired, requeued). Dropped entries stay in the lists until trimmed from the
    front or compacted away (when they outnumber the live ones), and ``walk`` skips them."""

    def __init__(self) -> None:
        self._lists: defaultdict[tuple[str, JobStatus], list[_Entry]] = defaultdict(list)
        self._current: dict[str, tuple[str, JobStatus, int]] = {}  # id -> its live entry
        self._live: Counter[tuple[str, JobStatus]] = Counter()
        self._number = 0

    def add(self, queue: str, status: JobStatus, job_id: str, now: float) -> None:
        self.remove(job_id)
        self._number += 1
        where = (queue, status)
        self._lists[where].append((self._number, now, job_id))
        self._current[job_id] = (queue, status, self._number)
        self._live[where] += 1
        self._compact(where)

    def remove(self, job_id: str) -> None:
        where = self._forget(job_id)
        if where is not None:
            self._compact(where)

    def trim(self, queue: str, status: JobStatus, kept_since: float) -> None:
        """Drop the oldest entries while they ended at or before ``kept_since`` (past the
        broker's result TTL) or were removed."""
        entries = self._lists.get((queue, status))
        if not entries:
            return
        start = 0
        while start < len(entries) and (
            entries[start][1] <= kept_since or not self._is_current(queue, status, entries[start])
        ):
            start += 1
        if start:
            for entry in entries[:start]:
                if self._is_current(queue, status, entry):
                    self._forget(entry[2])
            del entries[:start]
            self._compact((queue, status))

    def walk(
        self, queue: str, status: JobStatus, below: int | None
    ) -> Iterator[tuple[int, float, str]]:
        """The live entries (number, end time, id), newest first, from below number ``below``
        (None: the newest). The caller checks that the job still stands so (its record)."""
        entries = self._lists.get((queue, status), [])
        i = len(entries) if below is None else bisect_left(entries, (below,))
        while i > 0:
            i -= 1
            if self._is_current(queue, status, entries[i]):
                yield entries[i]

    def _forget(self, job_id: str) -> tuple[str, JobStatus] | None:
        """Drop the job's live entry (it stays in its list until compacted); where it was."""
        entry = self._current.pop(job_id, None)
        if entry is None:
            return None
        where = entry[:2]
        self._live[where] -= 1
        return where

    def _is_current(self, queue: str, status: JobStatus, entry: _Entry) -> bool:
        return self._current.get(entry[2]) == (queue, status, entry[0])

    def _compact(self, where: tuple[str, JobStatus]) -> None:
        """Rebuild a list once its dropped entries outnumber its live ones (amortised O(1)
        per add or remove)."""
        entries = self._lists[where]
        if len(entries) > 2 * self._live[where] + 64:
            entries[:] = [e for e in entries if self._is_current(*where, e)]


class MinuteCounts:
    """Per minute (its start, seconds since the epoch) and queue: the ``COUNTED`` fields and
    the run-time histogram, as one list (``COUNTED`` then the buckets of ``RUN_TIME_BOUNDS``).
    Minutes older than ``COUNTS_KEPT`` are dropped as new ones begin, and never read."""

    def __init__(self) -> None:
        self._minutes: dict[int, dict[str, list[int]]] = {}

    def add(self, now: float, queue: str, field: str, run: float | None = None) -> None:
        """Count one ``field`` (of ``COUNTED``) for ``queue`` now; ``run``: the run time of
        the attempt it settles (seconds), for the histogram."""
        minute = int(now // 60) * 60
        queues = self._minutes.get(minute)
        if queues is None:
            queues = self._minutes[minute] = {}
            self._forget_before(now - COUNTS_KEPT)
        row = queues.get(queue)
        if row is None:
            row = queues[queue] = [0] * (len(COUNTED) + len(RUN_TIME_BOUNDS) + 1)
        row[COUNTED.index(field)] += 1
        if run is not None:
            row[len(COUNTED) + bisect_left(RUN_TIME_BOUNDS, max(run, 0.0))] += 1

    def read(
        self, since: float, until: float | None, queues: Sequence[str] | None, now: float
    ) -> list[Counts]:
        """The rows of the minutes starting in ``[since, until)`` (``until`` None: up to now),
        kept, for ``queues`` (None: all), ordered by minute then queue."""
        low = max(float(since), now - COUNTS_KEPT)
        wanted: Callable[[str], bool] = (
            (lambda _: True) if queues is None else set(queues).__contains__
        )
        return [
            _row(minute, queue, counted)
            for minute in sorted(self._minutes)
            if low <= minute and (minute <= now if until is None else minute < until)
            for queue, counted in sorted(self._minutes[minute].items())
            if wanted(queue)
        ]

    def _forget_before(self, moment: float) -> None:
        for minute in [m for m in self._minutes if m < moment]:
            del self._minutes[minute]


def _row(minute: int, queue: str, counted: list[int]) -> Counts:
    fields = dict(zip(COUNTED, counted[: len(COUNTED)], strict=True))
    return Counts(minute=minute, queue=queue, runs=tuple(counted[len(COUNTED) :]), **fields)
