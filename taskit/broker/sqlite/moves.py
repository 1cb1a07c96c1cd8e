"""The steps every SQLite broker call builds on: places in line, the sweep of expired records,
due jobs made ready, and the ends of a job. Each runs inside the caller's transaction (``Tx``).
"""

from __future__ import annotations

from taskit.broker.sqlite.schema import RANKS
from taskit.broker.sqlite.store import Tx
from taskit.errors import CorruptJobError
from taskit.job import JobStatus

__all__ = [
    "ALIVE",
    "SWEEP",
    "back_ranks",
    "bury",
    "chores",
    "finish",
    "front_ranks",
    "promote",
    "sweep",
]

#: How many expired finished records one call deletes at most (the rest go in later calls).
SWEEP = 100
#: The SQL condition of a row whose record still exists for the reader at ``?`` (its time).
ALIVE = "(expires IS NULL OR expires > ?)"
# Whether a record has expired, and whether a job is due (``chores``): each an index's first entry.
_CHORES = (
    "SELECT EXISTS (SELECT 1 FROM jobs WHERE expires <= ?1), EXISTS (SELECT 1 FROM jobs "
    "WHERE status IN ('scheduled', 'retrying') AND due <= ?1)"
)


def back_ranks(tx: Tx, n: int) -> range:
    """``n`` ranks behind every rank given so far, in order."""
    (last,) = tx.conn.execute(
        "UPDATE counts SET n = n + ? WHERE queue = ? AND status = 'back' RETURNING n", (n, RANKS)
    ).fetchone()
    return range(last - n + 1, last + 1)


def front_ranks(tx: Tx, n: int) -> range:
    """``n`` ranks ahead of every rank given so far, in order (the first is the lowest)."""
    (first,) = tx.conn.execute(
        "UPDATE counts SET n = n - ? WHERE queue = ? AND status = 'front' RETURNING n", (n, RANKS)
    ).fetchone()
    return range(first, first + n)


def sweep(tx: Tx) -> int:
    """Delete up to ``SWEEP`` finished records whose time to be kept has passed; how many.
    Most calls find none: a look at the index's first entry says so without the ``DELETE``'s
    list of rows (a temporary b-tree, built each time it runs)."""
    due = tx.conn.execute("SELECT 1 FROM jobs WHERE expires <= ? LIMIT 1", (tx.now,)).fetchone()
    return 0 if due is None else _swept(tx)


def chores(tx: Tx) -> int:
    """``sweep``, then ``promote``: how many records went. One look tells whether either has
    anything to do (most reserves find neither), one statement rather than two."""
    expired, due = tx.conn.execute(_CHORES, (tx.now,)).fetchone()
    swept = _swept(tx) if expired else 0
    if due:
        promote(tx)
    return swept


def _swept(tx: Tx) -> int:
    cur = tx.conn.execute(
        "DELETE FROM jobs WHERE seq IN "
        "(SELECT seq FROM jobs WHERE expires <= ? ORDER BY expires LIMIT ?)",
        (tx.now, SWEEP),
    )
    return cur.rowcount


def promote(tx: Tx) -> None:
    """Make every scheduled or retrying job that is due now PENDING, at the back of its
    priority, in the order they fell due."""
    due = tx.conn.execute(
        "SELECT seq FROM jobs WHERE status IN ('scheduled', 'retrying') AND due <= ? "
        "ORDER BY due, rank",
        (tx.now,),
    ).fetchall()
    if not due:
        return
    ranks = back_ranks(tx, len(due))
    tx.conn.executemany(
        "UPDATE jobs SET status = 'pending', rank = ?, due = NULL WHERE seq = ?",
        [(rank, seq) for rank, (seq,) in zip(ranks, due, strict=True)],
    )
    tx.ready = True


def finish(tx: Tx, job_id: str, status: JobStatus, ttl: float) -> None:
    """End job ``job_id`` as ``status``, its record kept ``ttl`` seconds (0: gone at once)."""
    tx.conn.execute(
        "UPDATE jobs SET status = ?, completed = ?, token = NULL, settled = NULL, "
        "deadline = NULL, due = NULL, expires = ? WHERE id = ?",
        (status.value, tx.now, tx.now + ttl, job_id),
    )


def bury(tx: Tx, job_id: str, exc: CorruptJobError) -> None:
    """Dead-letter a job whose record does not read back, with the reason, rather than fail
    the call for every other job (as the other brokers do)."""
    (rank,) = back_ranks(tx, 1)
    tx.conn.execute(
        "UPDATE jobs SET status = 'dead_letter', token = NULL, settled = NULL, deadline = NULL, "
        "due = NULL, expires = NULL, error = ?, error_type = ?, traceback = NULL, failed = ?, "
        "completed = ?, rank = ? WHERE id = ?",
        (str(exc), type(exc).__name__, tx.now, tx.now, rank, job_id),
    )
