"""Reading and admin on SQLite: get, cancel, stats, dead letters, purges and paused queues,
each run inside one transaction (``Tx``) by ``SqliteBroker``."""

from __future__ import annotations

from collections.abc import Sequence

from taskit.broker.checks import corrupt_job
from taskit.broker.sqlite.moves import ALIVE, back_ranks, finish, promote, sweep
from taskit.broker.sqlite.records import COLUMNS, read_job
from taskit.broker.sqlite.schema import RANKS
from taskit.broker.sqlite.store import Tx
from taskit.errors import CorruptJobError
from taskit.job import Job, JobStatus, QueueStats

__all__ = [
    "cancel",
    "dead_letters",
    "get",
    "pause",
    "paused",
    "purge",
    "purge_dead",
    "requeue_dead",
    "resume",
    "stats",
]

# The jobs ``purge`` deletes (held: in a limit's line), each part as its index's condition.
_WAITING_INDEXED = (
    "status = 'pending' AND grp IS NULL",
    "status = 'pending' AND grp IS NOT NULL",
    "status = 'held'",
    "status IN ('scheduled', 'retrying')",
)


def get(tx: Tx, job_id: str) -> Job | None:
    """See ``Broker.get``: a spec that does not decode reads as a stand-in."""
    row = tx.conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND {ALIVE}", (job_id, tx.now)
    ).fetchone()
    return None if row is None else read_job(row, placeholder=True)


def cancel(tx: Tx, job_id: str, default_ttl: float) -> bool:
    """See ``Broker.cancel``."""
    sweep(tx)
    row = tx.conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND {ALIVE}", (job_id, tx.now)
    ).fetchone()
    if row is None:
        return False
    job = read_job(row)  # unreadable: CorruptJobError, nothing changes
    if job.status.finished:
        return False
    if job.status is JobStatus.RUNNING:
        tx.conn.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))
        return True
    ttl = default_ttl if job.result_ttl is None else job.result_ttl
    finish(tx, job_id, JobStatus.CANCELLED, ttl)
    return True


def stats(tx: Tx, queues: Sequence[str] | None) -> dict[str, QueueStats]:
    """See ``Broker.stats``: read from the ``counts`` the triggers keep."""
    promote(tx)
    if queues is None:
        names = [
            q
            for (q,) in tx.conn.execute(
                "SELECT DISTINCT queue FROM counts WHERE queue != ? ORDER BY 1", (RANKS,)
            )
        ]
    else:
        names = list(queues)
    out: dict[str, QueueStats] = {}
    for name in names:
        n = dict(tx.conn.execute("SELECT status, n FROM counts WHERE queue = ?", (name,)))
        out[name] = QueueStats(
            queued=n.get("pending", 0) + n.get("held", 0),
            scheduled=n.get("scheduled", 0) + n.get("retrying", 0),
            running=n.get("running", 0),
            completed=n.get("total:completed", 0),
            failed=n.get("total:failed", 0),
            dead=n.get("dead_letter", 0),
            deferred=n.get("deferred", 0),
        )
    return out


def dead_letters(tx: Tx, queue: str, limit: int, offset: int) -> list[Job]:
    """See ``Broker.dead_letters``: an unreadable record is listed as a stand-in."""
    rows = tx.conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE status = 'dead_letter' AND queue = ? "
        "ORDER BY rank LIMIT ? OFFSET ?",
        (queue, max(limit, 0), max(offset, 0)),
    ).fetchall()
    out: list[Job] = []
    for row in rows:
        try:
            out.append(read_job((*row[:-2], None, row[-1]), placeholder=True))
        except CorruptJobError as exc:
            out.append(corrupt_job(row[0], queue, str(exc)))
    return out


def requeue_dead(tx: Tx, queue: str, job_ids: Sequence[str] | None) -> int:
    """See ``Broker.requeue_dead``: unreadable dead letters stay."""
    sql = f"SELECT {COLUMNS} FROM jobs WHERE status = 'dead_letter' AND queue = ?"
    if job_ids is None:
        rows = tx.conn.execute(sql + " ORDER BY rank", (queue,)).fetchall()
    else:
        wanted = list(dict.fromkeys(job_ids))  # an id counts once
        rows = [
            row
            for job_id in wanted
            if (row := tx.conn.execute(sql + " AND id = ?", (queue, job_id)).fetchone())
        ]
    chosen: list[str] = []
    for row in rows:
        try:
            read_job(row)
        except CorruptJobError:
            continue
        chosen.append(row[0])
    ranks = back_ranks(tx, len(chosen)) if chosen else range(0)
    tx.conn.executemany(
        "UPDATE jobs SET status = 'pending', attempts = 0, cancel = 0, settled = NULL, "
        "rank = ? WHERE id = ?",
        list(zip(ranks, chosen, strict=True)),
    )
    tx.ready = tx.ready or bool(chosen)
    return len(chosen)


def purge(tx: Tx, queue: str) -> int:
    """See ``Broker.purge``."""
    return sum(
        tx.conn.execute(f"DELETE FROM jobs WHERE {where} AND queue = ?", (queue,)).rowcount
        for where in _WAITING_INDEXED
    )


def purge_dead(tx: Tx, queue: str) -> int:
    """See ``Broker.purge_dead``."""
    cur = tx.conn.execute("DELETE FROM jobs WHERE queue = ? AND status = 'dead_letter'", (queue,))
    return cur.rowcount


def pause(tx: Tx, queue: str) -> bool:
    return tx.conn.execute("INSERT OR IGNORE INTO paused VALUES (?)", (queue,)).rowcount == 1


def resume(tx: Tx, queue: str) -> bool:
    done = tx.conn.execute("DELETE FROM paused WHERE queue = ?", (queue,)).rowcount == 1
    tx.ready = tx.ready or done
    return done


def paused(tx: Tx) -> frozenset[str]:
    return frozenset(q for (q,) in tx.conn.execute("SELECT queue FROM paused"))
