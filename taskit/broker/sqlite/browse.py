"""Browsing on SQLite (``taskit.broker.browse``): listings by state with a cursor, ``promote``,
``forget`` and ``stream_tail``, each run inside one transaction (``Tx``) by ``SqliteBroker``.
The per-minute counts are in ``tally``.

Each listing walks one partial index (``schema``) in its order, two keys and then ``seq``: a
page is a seek to where the cursor stopped, then the next rows, O(log n + page) in the jobs of
the state, never an OFFSET. A cursor is the last listed row's keys, with the listing and queue
it belongs to: msgpack ``[listing, queue, key, seq]``, base64 (url-safe). A job that stays in
its state keeps its keys, so a walk lists it once (a RUNNING job's key is its lease deadline,
which ``extend`` moves later: it may come again). The orders:

* QUEUED: as reserved, priority (highest first) then rank (FIFO; a job handed back first).
* SCHEDULED, RETRYING: due time, then rank. RUNNING: lease deadline. DEFERRED: ``seq`` (the
  order they were stored).
* COMPLETED, FAILED, CANCELLED: end time, newest first (ties: the later stored first), while
  the record is kept and at most the broker's ``result_ttl`` after the end.
* DEAD: rank, newest first (a dead letter gets a rank behind every other as it dies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from taskit.broker.browse import SCAN_BUDGET, JobPage, Listing, make_cursor, matches, read_cursor
from taskit.broker.checks import corrupt_job
from taskit.broker.sqlite.moves import ALIVE, back_ranks, promote, sweep
from taskit.broker.sqlite.records import COLUMNS, read_job
from taskit.broker.sqlite.store import Tx
from taskit.errors import CorruptJobError
from taskit.job import Job

__all__ = ["forget", "list_jobs", "promote_job", "stream_tail"]

_ENDED = "('completed', 'failed', 'cancelled', 'dead_letter')"


@dataclass(frozen=True, slots=True)
class _Order:
    """How one listing walks its indexes (``INDEXED BY``: a plan that cannot use one fails
    rather than scan). ``sources``: each index, with the condition that picks the rows of the
    state there (the partial index's own, word for word; ``?``: the status); the rows of
    several sources are merged. ``key`` and ``tie`` (unique) order them, each descending or
    not. ``kept``: a finished state, listed while kept and at most the broker's result TTL
    after the end."""

    sources: tuple[tuple[str, str], ...]
    key: str
    tie: str = "seq"
    descending: bool = False
    tie_descending: bool = False
    kept: bool = False

    def sort_key(self, place: _Place) -> tuple[float, float]:
        key, tie = place
        return (-key if self.descending else key, -tie if self.tie_descending else tie)


# A cursor's place: the key and the tie-breaker of the last listed row.
_Place = tuple[float, int]
# ``due IS NOT NULL`` (always true there) bounds the key: without a range on it, SQLite sorts
# the rows of a status picked out of an IN list rather than read them in the index's order.
_WAITING = (
    ("jobs_waiting", "status IN ('scheduled', 'retrying') AND status = ? AND due IS NOT NULL"),
)
_FINISHED = (
    (
        "jobs_ended",
        "(status = 'completed' OR status = 'failed' OR status = 'cancelled') AND status = ?",
    ),
)
# Ready jobs and those held back in a limit's line (``held``, shown PENDING), merged.
_QUEUED = (
    ("jobs_ready", "status = 'pending' AND grp IS NULL"),
    ("jobs_grouped", "status = 'pending' AND grp IS NOT NULL"),
    ("jobs_held", "status = 'held'"),
)
_ORDERS = {
    Listing.QUEUED: _Order(_QUEUED, "priority", "rank", descending=True),
    Listing.SCHEDULED: _Order(_WAITING, "due", "rank"),
    Listing.RETRYING: _Order(_WAITING, "due", "rank"),
    Listing.RUNNING: _Order((("jobs_leases", "status = 'running'"),), "deadline"),
    Listing.DEFERRED: _Order((("jobs_deferred", "status = 'deferred'"),), "seq"),
    Listing.COMPLETED: _Order(_FINISHED, "completed", descending=True, tie_descending=True,
                              kept=True),
    Listing.FAILED: _Order(_FINISHED, "completed", descending=True, tie_descending=True,
                           kept=True),
    Listing.CANCELLED: _Order(_FINISHED, "completed", descending=True, tie_descending=True,
                              kept=True),
    Listing.DEAD: _Order((("jobs_dead", "status = 'dead_letter'"),), "rank", descending=True,
                         tie_descending=True),
}  # fmt: skip


def list_jobs(
    tx: Tx,
    queue: str,
    listing: Listing,
    cursor: str | None,
    limit: int,
    task: str | None,
    text: str | None,
    result_ttl: float,
) -> JobPage:
    """See ``Browsing.list_jobs`` (checked by the caller: ``check_page``)."""
    after = None if cursor is None else _place_of(cursor, queue, listing)
    sweep(tx)
    promote(tx)
    filtered = task is not None or text is not None
    budget = SCAN_BUDGET if filtered else limit
    rows = _rows(tx, queue, listing, after, budget + 1, result_ttl)
    jobs: list[Job] = []
    scanned = 0
    last: _Place | None = None
    for place, row in rows[:budget]:
        scanned += 1
        last = place
        job = _shown(row, listing)
        if not filtered or matches(job, task, text):
            jobs.append(job)
            if len(jobs) == limit:
                break
    page_cursor = None
    if last is not None and len(rows) > scanned:  # rows after the last examined
        page_cursor = make_cursor(listing, queue, last)
    return JobPage(jobs, page_cursor, scanned)


def _rows(
    tx: Tx, queue: str, listing: Listing, after: _Place | None, count: int, result_ttl: float
) -> list[tuple[_Place, tuple[object, ...]]]:
    """Up to ``count`` rows of ``queue`` in ``listing``, in its order, past ``after``: from
    each source, those of the cursor's key past its tie-breaker, then those past its key (two
    index seeks), merged."""
    order = _ORDERS[listing]
    found: list[tuple[_Place, tuple[object, ...]]] = []
    for index, where in order.sources:
        args: list[object] = [listing.status.value] if "?" in where else []
        found += _walk(tx, order, index, where, args, queue, after, count, result_ttl)
    if len(order.sources) > 1:
        found.sort(key=lambda item: order.sort_key(item[0]))
    return found[:count]


def _walk(
    tx: Tx,
    order: _Order,
    index: str,
    where: str,
    args: list[object],
    queue: str,
    after: _Place | None,
    count: int,
    result_ttl: float,
) -> list[tuple[_Place, tuple[object, ...]]]:
    """Up to ``count`` rows of one source, in order, past ``after``."""
    key, tie = order.key, order.tie
    base = (
        f"SELECT {key}, {tie}, {COLUMNS} FROM jobs INDEXED BY {index} WHERE {where} AND queue = ?"
    )
    args.append(queue)
    if order.kept:  # listed at most the broker's TTL after its end
        base += f" AND {ALIVE} AND completed > ?"
        args += [tx.now, tx.now - result_ttl]
    key_past, key_way = ("<", "DESC") if order.descending else (">", "ASC")
    tie_past, tie_way = ("<", "DESC") if order.tie_descending else (">", "ASC")
    sorted_by = f"ORDER BY {key} {key_way}, {tie} {tie_way} LIMIT ?"
    if after is None:
        rows = tx.conn.execute(f"{base} {sorted_by}", (*args, count)).fetchall()
    else:
        at, tied = after
        rows = tx.conn.execute(
            f"{base} AND {key} = ? AND {tie} {tie_past} ? {sorted_by}", (*args, at, tied, count)
        ).fetchall()
        if len(rows) < count:
            rows += tx.conn.execute(
                f"{base} AND {key} {key_past} ? {sorted_by}", (*args, at, count - len(rows))
            ).fetchall()
    return [((row[0], row[1]), row[2:]) for row in rows]


def _shown(row: tuple[object, ...], listing: Listing) -> Job:
    """What ``get`` shows of a row; a stand-in naming the problem for one that does not read
    back, in the listing's state."""
    try:
        return read_job(row, placeholder=True)
    except CorruptJobError as exc:
        job_id, queue = str(row[0]), str(row[1])
        return msgspec.structs.replace(corrupt_job(job_id, queue, str(exc)), status=listing.status)


def promote_job(tx: Tx, job_id: str) -> bool:
    """See ``Browsing.promote``: a SCHEDULED or RETRYING job PENDING at the back of its queue."""
    sweep(tx)
    promote(tx)
    row = tx.conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND status IN ('scheduled', 'retrying')",
        (job_id,),
    ).fetchone()
    if row is None:
        return False
    read_job(row)  # CorruptJobError for a record that does not read back: nothing changes
    (rank,) = back_ranks(tx, 1)
    tx.conn.execute(
        "UPDATE jobs SET status = 'pending', rank = ?, due = NULL WHERE id = ?", (rank, job_id)
    )
    tx.ready = True
    return True


def forget(tx: Tx, job_ids: Sequence[str]) -> int:
    """See ``Browsing.forget``: the kept finished records and dead letters among ``job_ids``
    deleted; how many."""
    sweep(tx)
    cur = tx.conn.executemany(
        f"DELETE FROM jobs WHERE id = ? AND status IN {_ENDED} AND {ALIVE}",
        [(job_id, tx.now) for job_id in dict.fromkeys(job_ids)],
    )
    return max(cur.rowcount, 0)


def stream_tail(tx: Tx, stream: str, after: str | None, count: int) -> list[tuple[str, bytes]]:
    """See ``Browsing.stream_tail`` (``count`` checked by the caller). ``ValueError`` for an
    ``after`` that is not an entry id."""
    if after is None:
        rows = tx.conn.execute(
            "SELECT n, entry FROM stream_entries WHERE stream = ? ORDER BY n DESC LIMIT ?",
            (stream, count),
        ).fetchall()
        rows.reverse()
    else:
        head, _, tail = str(after).partition("-")
        if head != "0" or not tail.isdigit():
            raise ValueError(f"stream_tail: after must be an entry id, got {after!r}")
        rows = tx.conn.execute(
            "SELECT n, entry FROM stream_entries WHERE stream = ? AND n > ? ORDER BY n LIMIT ?",
            (stream, int(tail), count),
        ).fetchall()
    return [(f"0-{n}", bytes(entry)) for n, entry in rows]


def _place_of(cursor: str, queue: str, listing: Listing) -> _Place:
    return read_cursor(cursor, queue, listing, tuple[float | int, int])
