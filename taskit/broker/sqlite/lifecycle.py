"""A job's way through the SQLite broker: enqueue, reserve, extend, progress and reclaim, each
run inside one transaction (``Tx``) by ``SqliteBroker``. Settling is in ``outcomes``."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from taskit.broker.sqlite import dedup, fair, limits, tally, workflows
from taskit.broker.sqlite.moves import back_ranks, bury, chores, finish, sweep
from taskit.broker.sqlite.records import COLUMNS, read_job, shown_time
from taskit.broker.sqlite.store import Tx
from taskit.errors import CorruptJobError
from taskit.job import (
    Job,
    JobStatus,
    Lease,
    LeaseState,
    kept_job,
    utc_from_timestamp,
)

__all__ = ["Given", "enqueue", "extend", "plain", "reclaim", "set_progress", "take"]

_FINISHED = tuple(status.value for status in JobStatus if status.finished)
_INSERT = (
    "INSERT INTO jobs (id, queue, status, priority, rank, due, sched, grp, limit_keys, spec) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_NEW = _INSERT + " ON CONFLICT DO NOTHING"
# The jobs a reserve takes (``{}``: their seqs' marks), marked RUNNING, each under a fresh
# token: the call's random prefix and the job's seq (unique among the call's jobs). One
# statement for them all, without RETURNING (SQLite builds a temporary b-tree for it each
# time): the leases are built from the rows ``fair.pick`` read.
_TAKE = (
    "UPDATE jobs SET status = 'running', token = ? || seq, deadline = ?, leased_at = ?, "
    "started = ?, attempts = attempts + 1, settled = NULL WHERE seq IN ({})"
)


@dataclass(frozen=True, slots=True)
class Given:
    """A job to enqueue as checked before the transaction: as stored (every live field fresh),
    its encoded spec, its delay in seconds, and the ``scheduled_at`` it was given (seconds)."""

    job: Job
    spec: bytes
    delay: float
    scheduled: float | None


def enqueue(tx: Tx, given: Sequence[Given], default_ttl: float) -> list[Job]:
    """See ``Broker.enqueue``: ``given`` stored, all or none. ``default_ttl``: the broker's
    result TTL (for a workflow's jobs ended at once)."""
    if all(plain(item.job) for item in given):
        return _enqueue_plain(tx, given)
    sweep(tx)  # an expired record of a parent or of a dedup window's job reads as gone
    rows: dict[str, tuple[object, ...] | None] = {}  # each id's row before the call
    for item in given:  # an unreadable unfinished job of that id: CorruptJobError, nothing stored
        job_id = item.job.id
        if job_id not in rows:
            row = rows[job_id] = _row(tx, job_id)
            if row is not None and row[2] not in _FINISHED:
                read_job(row)
    workflows.check(tx, [item.job for item in given])  # ValueError: nothing stored
    out: list[Job] = []
    stored: Counter[str] = Counter()  # per queue, for the per-minute counts
    for item in given:  # each may change rows another reads (dedup windows, workflows)
        job_id = item.job.id
        row = _row(tx, job_id)
        if row is not None and row[2] not in _FINISHED:
            out.append(kept_job(read_job(row)))
            continue
        due = _due(tx, item)
        if item.job.dedup is not None:
            kept = dedup.deduped(tx, item.job, item.spec, due)
            if kept is not None:
                out.append(kept)
                continue
        if row is not None:  # a finished one: its record goes
            tx.conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        job = _insert(tx, item, due, back_ranks(tx, 1)[0], default_ttl)
        assert job is not None  # the id is free: its row, if any, was deleted
        out.append(job)
        stored[item.job.queue] += 1
        if item.job.dedup is not None:
            dedup.start(tx, item.job, due)
    tally.enqueued(tx, stored)
    return out


def plain(job: Job) -> bool:
    """Whether ``job`` is plain: no dedup window, no workflow, no parent. Its enqueue touches
    no row but its own, and ends no job (a finished record of its id goes, and that ends
    nothing)."""
    return job.dedup is None and job.workflow is None and job.after is None


def _enqueue_plain(tx: Tx, given: Sequence[Given]) -> list[Job]:
    """``enqueue`` of plain jobs: each inserted at once, in its place in line; only an id that
    is taken is read (kept if unfinished: an unreadable one raises ``CorruptJobError`` and
    the call's rollback stores nothing; a finished record is replaced)."""
    out: list[Job] = []
    stored: Counter[str] = Counter()  # per queue, for the per-minute counts
    for item, rank in zip(given, back_ranks(tx, len(given)), strict=True):
        job = _insert(tx, item, _due(tx, item), rank, 0.0, new=True)
        if job is None:  # the id is taken
            row = _row(tx, item.job.id)
            assert row is not None
            if row[2] not in _FINISHED:
                out.append(kept_job(read_job(row)))
                continue
            tx.conn.execute("DELETE FROM jobs WHERE id = ?", (item.job.id,))
            job = _insert(tx, item, _due(tx, item), rank, 0.0)
            assert job is not None
        out.append(job)
        stored[item.job.queue] += 1
    tally.enqueued(tx, stored)
    return out


def _row(tx: Tx, job_id: str) -> tuple[object, ...] | None:
    """The row of job ``job_id``, whatever its status (read with ``COLUMNS``)."""
    row: tuple[object, ...] | None = tx.conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    return row


def _due(tx: Tx, item: Given) -> float:
    due = tx.now + item.delay
    return due if item.scheduled is None else max(due, item.scheduled)


def _insert(
    tx: Tx, item: Given, due: float, rank: int, default_ttl: float, *, new: bool = False
) -> Job | None:
    """Store ``item`` (SCHEDULED until ``due``, or PENDING) as it stands; with ``new``, not
    if its id is taken (None)."""
    job = item.job
    ready = due <= tx.now
    status, sched = (JobStatus.PENDING, None) if ready else (JobStatus.SCHEDULED, shown_time(due))
    group, keys = fair.group_of(job.group, job.priority), limits.join_keys(job.limits)
    cur = tx.conn.execute(
        _INSERT_NEW if new else _INSERT,
        (job.id, job.queue, status.value, job.priority, rank, sched, sched, group, keys, item.spec),
    )
    if cur.rowcount == 0:
        return None
    tx.ready = tx.ready or ready
    stored = job
    if sched is not None:
        stored = msgspec.structs.replace(job, status=status, scheduled_at=utc_from_timestamp(sched))
    if job.workflow is not None:  # a node: DEFERRED while it waits for its parents
        return workflows.place(tx, job, due, default_ttl) or stored
    return stored


def take(tx: Tx, queues: Sequence[str], count: int, lease: float) -> tuple[list[Lease], bool]:
    """Lease up to ``count`` ready jobs of ``queues`` (paused ones skipped), in order (``fair``:
    priorities, then turns over groups); due jobs are promoted first. A job its limits hold back
    is not leased (``limits.gate``); after ``limits.HOLD_CAP`` of them the call stops looking
    and answers True with its leases (more may be ready: call again). A job whose record does
    not read back is dead-lettered."""
    if chores(tx):  # finished records went: workflows whose time is up go with them
        workflows.sweep(tx)
    taken: list[Lease] = []
    held_back = 0
    deadline = tx.now + lease
    for queue in queues:
        while len(taken) < count and held_back < limits.HOLD_CAP:
            picked = fair.pick(tx, queue, count - len(taken))
            if not picked:
                break
            go: list[fair.Pick] = []
            for row in picked:
                if held_back >= limits.HOLD_CAP:
                    break
                if row[1] is not None and not limits.gate(tx, row[0], row[2], row[1]):
                    held_back += 1
                    continue
                go.append(row)
            taken += _lease(tx, go, deadline)
    return taken, held_back >= limits.HOLD_CAP


def _lease(tx: Tx, picked: list[fair.Pick], deadline: float) -> list[Lease]:
    """Jobs ``picked`` leased until ``deadline``, in that order; a job whose record does not
    read back is dead-lettered instead (the slots it just took freed)."""
    if not picked:
        return []
    prefix, now = os.urandom(16).hex(), tx.now
    sql = _TAKE.format(", ".join("?" * len(picked)))
    tx.conn.execute(sql, (prefix, deadline, now, now, *[row[0] for row in picked]))
    leases: list[Lease] = []
    for row in picked:
        token = f"{prefix}{row[0]}"
        # The row as the UPDATE left it: RUNNING, one attempt more, started now, no progress.
        (job_id, queue, _, attempts, sched, _, *ended, _, spec) = row[2:]
        attempts = attempts + 1 if isinstance(attempts, int) else attempts
        try:
            job = read_job((job_id, queue, "running", attempts, sched, now, *ended, None, spec))
        except CorruptJobError as exc:
            bury(tx, exc.job_id, exc)
            fair.front(tx, limits.release(tx, exc.job_id))
            continue
        leases.append(Lease(job=job, token=token, deadline=deadline))
    return leases


def extend(tx: Tx, leases: Sequence[Lease], lease: float) -> list[LeaseState]:
    """See ``Broker.extend``."""
    states: list[LeaseState] = []
    for held in leases:
        row = tx.conn.execute(
            "UPDATE jobs SET deadline = ? WHERE id = ? AND token = ? AND status = 'running' "
            "RETURNING cancel",
            (tx.now + lease, held.job.id, held.token),
        ).fetchone()
        if row is None:
            states.append(LeaseState.LOST)
        else:
            states.append(LeaseState.CANCELLED if row[0] else LeaseState.HELD)
    return states


def set_progress(tx: Tx, updates: Sequence[tuple[str, str, bytes]]) -> list[bool]:
    """Store each ``(job id, token, encoded progress)`` whose token holds its running job."""
    stored: list[bool] = []
    for job_id, token, progress in updates:
        cur = tx.conn.execute(
            "UPDATE jobs SET progress = ? WHERE id = ? AND token = ? AND status = 'running'",
            (progress, job_id, token),
        )
        stored.append(cur.rowcount == 1)
    return stored


def reclaim(
    tx: Tx, queues: Sequence[str], lease: float, limit: int, default_ttl: float
) -> list[Lease]:
    """See ``Broker.reclaim``. A job whose cancel was requested ends CANCELLED instead (kept
    for its own ``result_ttl``, else ``default_ttl``)."""
    taken: list[Lease] = []
    deadline = tx.now + lease
    for queue in queues if limit > 0 else ():
        rows = tx.conn.execute(
            f"SELECT cancel, {COLUMNS} FROM jobs WHERE status = 'running' AND queue = ? "
            "AND deadline <= ? ORDER BY deadline LIMIT ?",
            (queue, tx.now, limit - len(taken)),
        ).fetchall()
        for cancel, *columns in rows:
            job_id = columns[0]
            try:
                job = read_job((*columns[:-2], None, columns[-1]))
            except CorruptJobError as exc:
                bury(tx, job_id, exc)
                fair.front(tx, limits.release(tx, job_id))
                continue
            if cancel:
                ttl = default_ttl if job.result_ttl is None else job.result_ttl
                finish(tx, job_id, JobStatus.CANCELLED, ttl)
                fair.front(tx, limits.release(tx, job_id))
                continue
            (token,) = tx.conn.execute(
                "UPDATE jobs SET token = lower(hex(randomblob(16))), deadline = ?, "
                "leased_at = ?, settled = NULL WHERE id = ? RETURNING token",
                (deadline, tx.now, job_id),
            ).fetchone()
            taken.append(Lease(job=job, token=token, deadline=deadline))
        if len(taken) >= limit:
            break
    return taken
