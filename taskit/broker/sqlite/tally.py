"""The SQLite broker's per-minute counts (``Broker.counts``): jobs enqueued and settles by
outcome per queue and minute, with the run-time histogram, in the ``minutes`` table.

``enqueued`` and ``settled`` are called inside the transaction that stores or settles the jobs,
so a count never disagrees with what happened. A settle's run is timed from its lease's start
(``leased_at``: set by reserve and by reclaim) to the settle, on the broker's clock. Rows older
than ``COUNTS_KEPT`` are deleted when a queue's first count of a new minute is written (at most
once per queue a minute), and never read.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from taskit.broker.browse import COUNTS_KEPT, RUN_TIME_BOUNDS, Counts
from taskit.broker.sqlite.schema import RUN_COLUMNS
from taskit.broker.sqlite.store import Tx
from taskit.job import OutcomeKind

__all__ = ["FIELDS", "enqueued", "read", "settled"]

#: The fields of ``Counts`` a row counts, besides its runs.
FIELDS = ("enqueued", "completed", "failed", "retried", "dead", "cancelled")
_COUNTED = {
    OutcomeKind.COMPLETE: "completed",
    OutcomeKind.FAIL: "failed",
    OutcomeKind.RETRY: "retried",
    OutcomeKind.DEAD_LETTER: "dead",
    OutcomeKind.CANCEL: "cancelled",
}


def enqueued(tx: Tx, stored: Mapping[str, int]) -> None:
    """Count the jobs stored now: how many of each queue."""
    for queue, n in stored.items():
        if n:
            _add(tx, queue, ("enqueued",), n)


def settled(tx: Tx, settles: Iterable[tuple[str, float | None, OutcomeKind]]) -> None:
    """Count settles of held jobs, each ``(queue, leased_at, kind)``: its queue, when its lease
    started, and the kind applied (a RETRY turned CANCEL by a cancel request counts as
    CANCEL), and time their runs. RELEASE is not counted. One upsert per row and bucket."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for queue, leased_at, kind in settles:
        field = _COUNTED.get(kind)
        if field is None:
            continue
        run = 0.0 if leased_at is None else max(tx.now - float(leased_at), 0.0)
        counted[queue, field, RUN_COLUMNS[bisect_left(RUN_TIME_BOUNDS, run)]] += 1
    for (queue, field, bucket), n in counted.items():
        _add(tx, queue, (field, bucket), n)


def _add(tx: Tx, queue: str, columns: Sequence[str], n: int) -> None:
    """Add ``n`` to ``columns`` of ``queue``'s row of this minute; a new row first deletes the
    rows past ``COUNTS_KEPT``. An ``UPDATE`` first: the row is there but for a minute's first
    count (an upsert's ``RETURNING``, which told a new row, builds a temp b-tree each time)."""
    minute = int(tx.now // 60) * 60
    sets = ", ".join(f"{c} = {c} + ?" for c in columns)
    cur = tx.conn.execute(
        f"UPDATE minutes SET {sets} WHERE minute = ? AND queue = ?",
        (*[n] * len(columns), minute, queue),
    )
    if cur.rowcount:
        return
    tx.conn.execute("DELETE FROM minutes WHERE minute < ?", (tx.now - COUNTS_KEPT,))
    names = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    tx.conn.execute(
        f"INSERT INTO minutes (minute, queue, {names}) VALUES (?, ?, {marks})",
        (minute, queue, *[n] * len(columns)),
    )


def read(tx: Tx, since: float, until: float | None, queues: Sequence[str] | None) -> list[Counts]:
    """See ``Browsing.counts``: the kept rows of the minutes starting in ``[since, until)``
    (``until`` None: up to now), for ``queues`` (None: all), by minute then queue."""
    low = max(float(since), tx.now - COUNTS_KEPT)
    sql = f"SELECT minute, queue, {', '.join(FIELDS)}, {', '.join(RUN_COLUMNS)} FROM minutes "
    if until is None:
        sql += "WHERE minute >= ? AND minute <= ?"
        args: list[object] = [low, tx.now]
    else:
        sql += "WHERE minute >= ? AND minute < ?"
        args = [low, float(until)]
    if queues is not None:
        wanted = list(dict.fromkeys(queues))
        if not wanted:
            return []
        sql += f" AND queue IN ({', '.join('?' * len(wanted))})"
        args += wanted
    out: list[Counts] = []
    for minute, queue, *counted in tx.conn.execute(sql + " ORDER BY minute, queue", args):
        fields = dict(zip(FIELDS, counted[: len(FIELDS)], strict=True))
        out.append(Counts(minute=minute, queue=queue, runs=tuple(counted[len(FIELDS) :]), **fields))
    return out
