"""Dedup windows on SQLite (``taskit.dedup``, ``Job.dedup``), decided inside the enqueue's
transaction (``Tx``), so two producers at once make one job.

``windows`` holds each dedup key's open window: the id of the job it keeps and when it ends
(broker seconds). A throttle's window ends ``window`` seconds after its job's enqueue; a
debounce's when its job falls due (each job of its key moves it). Ended windows are deleted
as enqueues meet them, at most ``SWEEP`` a call.
"""

from __future__ import annotations

import msgspec

from taskit.broker.checks import kept_or_expired
from taskit.broker.sqlite.fair import group_of
from taskit.broker.sqlite.limits import join_keys
from taskit.broker.sqlite.moves import ALIVE, SWEEP
from taskit.broker.sqlite.records import COLUMNS, read_job, shown_time
from taskit.broker.sqlite.store import Tx
from taskit.job import Job, JobStatus, kept_job, utc_from_timestamp

__all__ = ["deduped", "start"]


def deduped(tx: Tx, job: Job, spec: bytes, due: float) -> Job | None:
    """What ``job`` (with a dedup window; encoded ``spec``, due at ``due``) is answered with
    instead of being stored, or None: store it. A throttle's open window answers its kept job
    (``CorruptJobError`` if that record does not read back); a debounce's open window whose
    kept job is still SCHEDULED in the same queue gives that job ``job``'s spec and moves it to
    ``due`` (and its window with it)."""
    assert job.dedup is not None
    tx.conn.execute(
        "DELETE FROM windows WHERE key IN "
        "(SELECT key FROM windows WHERE until <= ? ORDER BY until LIMIT ?)",
        (tx.now, SWEEP),
    )
    row = tx.conn.execute(
        "SELECT job FROM windows WHERE key = ? AND until > ?", (job.dedup.key, tx.now)
    ).fetchone()
    if row is None:
        return None
    kept_id: str = row[0]
    if job.dedup.mode == "throttle":
        found = tx.conn.execute(
            f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND {ALIVE}", (kept_id, tx.now)
        ).fetchone()
        kept = None if found is None else read_job((*found[:-2], None, found[-1]))
        return kept_or_expired(kept, kept_id, job.queue)
    held = tx.conn.execute(
        "SELECT attempts FROM jobs WHERE id = ? AND status = 'scheduled' AND queue = ?",
        (kept_id, job.queue),
    ).fetchone()
    if held is None:
        return None
    sched = shown_time(due)
    tx.conn.execute(
        "UPDATE jobs SET spec = ?, priority = ?, grp = ?, limit_keys = ?, due = ?, sched = ? "
        "WHERE id = ?",
        (spec, job.priority, group_of(job.group, job.priority), join_keys(job.limits), sched,
         sched, kept_id),
    )  # fmt: skip
    tx.conn.execute("UPDATE windows SET until = ? WHERE key = ?", (due, job.dedup.key))
    stored = msgspec.structs.replace(
        job,
        id=kept_id,
        status=JobStatus.SCHEDULED,
        attempts=held[0],
        scheduled_at=utc_from_timestamp(sched),
    )
    return kept_job(stored)


def start(tx: Tx, job: Job, due: float) -> None:
    """Open ``job``'s key's window, keeping ``job`` (just stored, due at ``due``): a throttle's
    for its window from now, a debounce's until ``due``."""
    assert job.dedup is not None
    until = tx.now + job.dedup.window if job.dedup.mode == "throttle" else due
    tx.conn.execute(
        "INSERT OR REPLACE INTO windows VALUES (?, ?, ?)", (job.dedup.key, job.id, until)
    )
