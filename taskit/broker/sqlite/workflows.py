"""Workflows on SQLite (``Broker``'s "Workflows"): which jobs wait for which, and how each node
ended, in the workflow tables (``schema``), changed in the transaction of the call that ends a
job.

How an end arrives here: triggers on ``jobs`` note every end of a node in ``wf_ends`` (its
status becoming COMPLETED, FAILED, CANCELLED or DEAD_LETTER, or a waiting job deleted by a
purge, which ends CANCELLED), whatever the step that ended it: a settle, a cancel, a reclaim, a
purge, an unreadable record dead-lettered, ``cancel``. ``apply_ends``, which ``SqliteBroker``
runs at the end of every call's transaction, applies them in order: each node's first end is
recorded (its status and ``result_of`` its job as it stood), and each job waiting for it gets
one parent fewer (released, with none left: PENDING at the back of its queue, or SCHEDULED
until its due time) or is ended without running (FAILED or CANCELLED, its error naming the
parent). Ending a waiting job notes its end in turn, which the same loop applies: a cascade is
a loop over ``wf_ends``, breadth first, never a recursion.

A waiting job is a ``jobs`` row of status ``deferred`` (its due time, counted from its enqueue,
in ``due``), in no queue's index. A workflow's record expires the broker's result TTL after its
last node ended; its nodes' results stay until then, whatever their jobs' ``result_ttl``.
Every function runs inside the caller's transaction (``Tx``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from taskit.broker.sqlite.moves import ALIVE, back_ranks, finish
from taskit.broker.sqlite.records import COLUMNS, read_job, shown_time
from taskit.broker.sqlite.store import Tx
from taskit.dependencies import IfFailed, check_after
from taskit.errors import CorruptJobError
from taskit.job import Job, JobResult, JobStatus, result_of, utc_from_timestamp
from taskit.workflow import WorkflowNode, WorkflowState

__all__ = ["apply_ends", "cancel", "check", "place", "results", "state", "sweep"]

#: How many expired workflows one call deletes at most (the rest go in later calls).
SWEEP = 100

_ENCODER = msgspec.msgpack.Encoder()
_RESULT = msgspec.msgpack.Decoder(JobResult)
_IDS = msgspec.msgpack.Decoder(tuple[str, ...])
_CANCELLED = JobResult(success=False, error="job was cancelled", error_type="Cancelled")
_KEPT = "(w.expires IS NULL OR w.expires > ?)"  # a workflow whose record is still kept


class Failure(NamedTuple):
    """Why a waiting job ends without running: the parent that ended without success, how it
    ended, and its result."""

    parent: str
    status: JobStatus
    result: JobResult | None


# -- enqueue -------------------------------------------------------------------------------------
def check(tx: Tx, jobs: Sequence[Job]) -> None:
    """``TypeError``/``ValueError`` naming the job and the parent if a job's ``after`` cannot
    be kept (see ``Broker.enqueue``); call before anything of ``jobs`` is stored."""
    sweep(tx)
    first: dict[str, int] = {}
    for i, job in enumerate(jobs):
        first.setdefault(job.id, i)
    for i, job in enumerate(jobs):
        check_after(job.id, job.workflow, job.after)
        for parent in () if job.after is None else job.after.jobs:
            owner = _owner(tx, jobs, i, parent, first.get(parent))
            if owner is not None and owner != job.workflow:
                raise ValueError(
                    f"job {job.id!r} of workflow {job.workflow!r} waits for job "
                    f"{parent!r}, which is a node of another workflow, {owner!r}"
                )


def _owner(tx: Tx, jobs: Sequence[Job], i: int, parent: str, at: int | None) -> str | None:
    """The workflow of ``jobs[i]``'s parent ``parent`` (None: none yet; it is adopted), or
    ``ValueError`` if it cannot be a parent: unknown, unreadable, or later in ``jobs``."""
    job = jobs[i]
    row = tx.conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND {ALIVE}", (parent, tx.now)
    ).fetchone()
    live = row is not None and not _finished(row[2])
    if at is not None and not live:  # this enqueue stores it
        if at > i:
            raise ValueError(
                f"job {job.id!r} waits for job {parent!r}, which comes later in the same "
                "enqueue: a job's parents must come before it"
            )
        return jobs[at].workflow
    owner = _member(tx, parent)
    if owner is not None:
        return owner
    if row is None:
        raise ValueError(
            f"job {job.id!r} waits for job {parent!r}, which is unknown (never stored, or its "
            "record expired)"
        )
    try:
        return read_job(row).workflow
    except CorruptJobError as exc:
        raise ValueError(f"job {job.id!r} waits for job {parent!r}: {exc}") from None


def place(tx: Tx, job: Job, due: float, default_ttl: float) -> Job | None:
    """Make ``job``, just stored (PENDING, or SCHEDULED until ``due``) and checked by
    ``check``, a node of its workflow, its parents of no workflow adopted first. None when it
    waits for nothing (it stays as stored); else the job as it is now: DEFERRED, or ended at
    once (its dependents too) because a parent already failed or was cancelled."""
    workflow = job.workflow
    assert workflow is not None
    for parent in () if job.after is None else job.after.jobs:
        if _member(tx, parent) != workflow:  # of none (``check`` refused the rest)
            _adopt(tx, workflow, parent)
    verdict = _join(tx, workflow, job)
    if verdict is True:
        return None
    tx.conn.execute(
        "UPDATE jobs SET status = 'deferred', due = ?, sched = NULL WHERE id = ?",
        (shown_time(due), job.id),
    )
    if isinstance(verdict, Failure):
        _kill(tx, job.id, verdict, default_ttl if job.result_ttl is None else job.result_ttl)
        apply_ends(tx, default_ttl)  # now: a later job of this enqueue sees it ended
    row = tx.conn.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job.id,)).fetchone()
    return read_job(row)


def _adopt(tx: Tx, workflow: str, job_id: str) -> None:
    """Stored job ``job_id`` of no workflow becomes a node of ``workflow``, as it stands:
    ended, with its result, if it is finished."""
    row = tx.conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND {ALIVE}", (job_id, tx.now)
    ).fetchone()
    job = read_job(row, placeholder=True)
    if not job.status.finished:
        _join(tx, workflow, msgspec.structs.replace(job, after=None))
        return
    _node(tx, workflow, job)
    tx.conn.execute(
        "UPDATE wf_nodes SET status = ?, result = ? WHERE workflow = ? AND job = ?",
        (job.status.value, _node_result(job), workflow, job.id),
    )


def _join(tx: Tx, workflow: str, job: Job) -> Failure | bool:
    """Job ``job`` becomes a node of ``workflow`` (its parents are nodes already). Answers
    what becomes of it now: True released (it waits for nothing), False deferred, or the
    ``Failure`` that ends it at once."""
    after = job.after
    parents = () if after is None else after.jobs
    continues = after is not None and after.if_failed is IfFailed.CONTINUE
    _node(tx, workflow, job, continues=continues)
    tx.conn.execute(
        "UPDATE workflows SET open = open + 1, expires = NULL WHERE id = ?", (workflow,)
    )
    waiting: list[str] = []
    for parent in parents:
        found = tx.conn.execute(
            "SELECT status, result FROM wf_nodes WHERE workflow = ? AND job = ?",
            (workflow, parent),
        ).fetchone()
        if found is None:
            continue  # cannot happen: ``place`` adopted every parent
        if found[0] is None:
            waiting.append(parent)
        elif found[0] != JobStatus.COMPLETED.value and not continues:
            return Failure(parent, JobStatus(found[0]), _decoded(found[1]))
    tx.conn.executemany(
        "INSERT OR IGNORE INTO wf_waits VALUES (?, ?, ?)",
        [(workflow, parent, job.id) for parent in waiting],
    )
    tx.conn.execute(
        "UPDATE wf_nodes SET waiting = ? WHERE workflow = ? AND job = ?",
        (len(waiting), workflow, job.id),
    )
    return not waiting


def _node(tx: Tx, workflow: str, job: Job, *, continues: bool = False) -> None:
    """Write ``job``'s node of ``workflow`` (made if new) as not ended, waiting for nothing
    yet: a node enqueued again (its finished job replaced) keeps its place and starts afresh."""
    tx.conn.execute(
        "INSERT INTO workflows VALUES (?, ?, 0, 0, NULL) ON CONFLICT DO NOTHING",
        (workflow, tx.now),
    )
    found = tx.conn.execute(
        "SELECT ord FROM wf_nodes WHERE workflow = ? AND job = ?", (workflow, job.id)
    ).fetchone()
    if found is None:
        (order,) = tx.conn.execute(
            "UPDATE workflows SET nodes = nodes + 1 WHERE id = ? RETURNING nodes", (workflow,)
        ).fetchone()
    else:
        (order,) = found
        tx.conn.execute("DELETE FROM wf_waits WHERE workflow = ? AND child = ?", (workflow, job.id))
    after = None if job.after is None else _ENCODER.encode(job.after.jobs)
    tx.conn.execute(
        "INSERT OR REPLACE INTO wf_nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL)",
        (workflow, job.id, order, job.task, job.queue, after, int(continues), job.result_ttl),
    )
    tx.conn.execute("INSERT OR REPLACE INTO wf_of VALUES (?, ?)", (job.id, workflow))


# -- ends ----------------------------------------------------------------------------------------
def apply_ends(tx: Tx, default_ttl: float) -> None:
    """Apply every end the triggers noted (see the module docstring), and the ends those
    cause, until none is left. ``default_ttl``: the broker's result TTL, for a workflow whose
    last node ends and a waiting job ended without its own ``result_ttl``."""
    while True:  # a plain SELECT first: most calls find none (RETURNING builds a temp b-tree)
        row = tx.conn.execute(
            "SELECT seq, job, status, gone FROM wf_ends ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return
        seq, job_id, status, gone = row
        tx.conn.execute("DELETE FROM wf_ends WHERE seq = ?", (seq,))
        _ended(tx, job_id, JobStatus(status), bool(gone), default_ttl)


def _ended(tx: Tx, job_id: str, status: JobStatus, gone: bool, default_ttl: float) -> None:
    """Record node ``job_id``'s first end and apply it to the jobs waiting for it."""
    found = tx.conn.execute(
        "SELECT o.workflow FROM wf_of o JOIN wf_nodes n ON n.workflow = o.workflow "
        "AND n.job = o.job WHERE o.job = ? AND n.status IS NULL",
        (job_id,),
    ).fetchone()
    if found is None:
        return  # no node, or it ended already: a job's end counts once
    (workflow,) = found
    result = _CANCELLED if gone else _result_at_end(tx, job_id, status)
    tx.conn.execute(
        "UPDATE wf_nodes SET status = ?, result = ? WHERE workflow = ? AND job = ?",
        (status.value, _ENCODER.encode(result), workflow, job_id),
    )
    (left,) = tx.conn.execute(
        "UPDATE workflows SET open = open - 1 WHERE id = ? RETURNING open", (workflow,)
    ).fetchone()
    if left <= 0:
        tx.conn.execute(
            "UPDATE workflows SET expires = ? WHERE id = ?", (tx.now + default_ttl, workflow)
        )
    # CROSS JOIN: look the waiting jobs up by their parent, not the workflow's every node.
    children = tx.conn.execute(
        "SELECT w.child, n.continues, n.ttl FROM wf_waits w CROSS JOIN wf_nodes n "
        "ON n.workflow = w.workflow AND n.job = w.child "
        "WHERE w.workflow = ? AND w.parent = ? AND n.status IS NULL ORDER BY n.ord",
        (workflow, job_id),
    ).fetchall()
    tx.conn.execute("DELETE FROM wf_waits WHERE workflow = ? AND parent = ?", (workflow, job_id))
    for child, continues, own_ttl in children:
        if status is JobStatus.COMPLETED or continues:
            (waiting,) = tx.conn.execute(
                "UPDATE wf_nodes SET waiting = waiting - 1 WHERE workflow = ? AND job = ? "
                "RETURNING waiting",
                (workflow, child),
            ).fetchone()
            if waiting <= 0:
                _release(tx, child)
        else:
            ttl = default_ttl if own_ttl is None else own_ttl
            _kill(tx, child, Failure(job_id, status, result), ttl)


def _release(tx: Tx, job_id: str) -> None:
    """A DEFERRED job waits for nothing more: at the back of its queue, or SCHEDULED until
    its due time (counted from its enqueue). Reserves are woken."""
    row = tx.conn.execute("SELECT status, due FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None or row[0] != JobStatus.DEFERRED.value:
        return  # cannot happen: a waiting node's job is DEFERRED
    due = row[1]
    if due is not None and due > tx.now:
        tx.conn.execute(
            "UPDATE jobs SET status = 'scheduled', sched = ? WHERE id = ?", (due, job_id)
        )
    else:
        (rank,) = back_ranks(tx, 1)
        tx.conn.execute(
            "UPDATE jobs SET status = 'pending', rank = ?, due = NULL WHERE id = ?",
            (rank, job_id),
        )
    tx.ready = True


def _kill(tx: Tx, job_id: str, failure: Failure, ttl: float) -> None:
    """End a DEFERRED job without running it, for its parent's failure or cancel; its record
    kept ``ttl`` seconds. Its end is noted (by the trigger) for ``apply_ends``."""
    row = tx.conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None or row[0] != JobStatus.DEFERRED.value:
        return  # cannot happen: a waiting node's job is DEFERRED
    cancelled = failure.status is JobStatus.CANCELLED
    error = f"waited for job {failure.parent}, which ended {failure.status.value}"
    parent = failure.result
    if parent is not None and parent.error_type == "DependencyFailed" and parent.error:
        error = parent.error  # a cascade: name the failure that started it (no growth)
    elif parent is not None and parent.error:
        error = f"{error}: {parent.error}"
    tx.conn.execute(
        "UPDATE jobs SET error = ?, error_type = ?, traceback = NULL, failed = ? WHERE id = ?",
        (
            error,
            "DependencyCancelled" if cancelled else "DependencyFailed",
            None if cancelled else tx.now,
            job_id,
        ),
    )
    finish(tx, job_id, JobStatus.CANCELLED if cancelled else JobStatus.FAILED, ttl)


def _result_at_end(tx: Tx, job_id: str, status: JobStatus) -> JobResult:
    """``result_of`` job ``job_id`` as it ended ``status``; for a record that no longer reads
    back (dead-lettered for it), the error it was buried with."""
    row = tx.conn.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return _CANCELLED if status is JobStatus.CANCELLED else JobResult(success=False)
    try:
        job = read_job(row, placeholder=True)
    except CorruptJobError:
        return JobResult(success=False, error=row[8], error_type=row[9])
    return _RESULT.decode(_node_result(msgspec.structs.replace(job, status=status)))


def _node_result(job: Job) -> bytes:
    """The stored form of what a node keeps of its finished job's end (``result_of`` it)."""
    try:
        return _ENCODER.encode(result_of(job))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return _ENCODER.encode(JobResult(success=False, error=job.error, error_type=job.error_type))


# -- the contract's workflow methods -------------------------------------------------------------
def state(tx: Tx, workflow: str) -> WorkflowState | None:
    """See ``Broker.workflow``."""
    sweep(tx)
    found = tx.conn.execute(
        f"SELECT w.created FROM workflows w WHERE w.id = ? AND {_KEPT}", (workflow, tx.now)
    ).fetchone()
    if found is None:
        return None
    rows = tx.conn.execute(
        "SELECT n.job, n.task, n.queue, n.after, n.status, n.result, j.status FROM wf_nodes n "
        "LEFT JOIN jobs j ON j.id = n.job WHERE n.workflow = ? ORDER BY n.ord",
        (workflow,),
    ).fetchall()
    nodes = tuple(
        WorkflowNode(
            id=job_id,
            task=task,
            queue=queue,
            status=_status(ended if ended is not None else now),
            after=() if after is None else _IDS.decode(after),
            result=_decoded(result),
        )
        for job_id, task, queue, after, ended, result, now in rows
    )
    return WorkflowState(id=workflow, created_at=utc_from_timestamp(found[0]), nodes=nodes)


def results(tx: Tx, workflow: str, job_ids: Sequence[str]) -> list[JobResult | None]:
    """See ``Broker.workflow_results``."""
    sweep(tx)
    out: list[JobResult | None] = []
    for job_id in job_ids:
        row = tx.conn.execute(
            f"SELECT n.result FROM wf_nodes n JOIN workflows w ON w.id = n.workflow "
            f"WHERE n.workflow = ? AND n.job = ? AND {_KEPT}",
            (workflow, job_id, tx.now),
        ).fetchone()
        out.append(None if row is None else _decoded(row[0]))
    return out


def cancel(tx: Tx, workflow: str, default_ttl: float) -> int:
    """See ``Broker.cancel_workflow``. The ends are applied by ``apply_ends`` after."""
    sweep(tx)
    rows = tx.conn.execute(
        f"SELECT n.job, n.ttl FROM wf_nodes n JOIN workflows w ON w.id = n.workflow "
        f"WHERE n.workflow = ? AND n.status IS NULL AND {_KEPT} ORDER BY n.ord DESC",
        (workflow, tx.now),
    ).fetchall()
    count = 0
    # Last first: each node's dependents come after it, so they are cancelled (as ``cancel``
    # does) before their parent's end could end them for it.
    for job_id, own_ttl in rows:
        found = tx.conn.execute(
            f"SELECT status FROM jobs WHERE id = ? AND {ALIVE}", (job_id, tx.now)
        ).fetchone()
        if found is None or _finished(found[0]):
            continue
        count += 1
        if found[0] == JobStatus.RUNNING.value:
            tx.conn.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))
        else:
            finish(tx, job_id, JobStatus.CANCELLED, default_ttl if own_ttl is None else own_ttl)
    return count


# -- shared --------------------------------------------------------------------------------------
def _member(tx: Tx, job_id: str) -> str | None:
    """The workflow (its record kept) that job ``job_id`` is a node of, or None."""
    row = tx.conn.execute(
        f"SELECT o.workflow FROM wf_of o JOIN workflows w ON w.id = o.workflow "
        f"WHERE o.job = ? AND {_KEPT}",
        (job_id, tx.now),
    ).fetchone()
    return None if row is None else str(row[0])


def sweep(tx: Tx) -> None:
    """Delete up to ``SWEEP`` workflows whose record has expired, with their nodes."""
    expired = tx.conn.execute(
        "SELECT id FROM workflows WHERE expires <= ? ORDER BY expires LIMIT ?", (tx.now, SWEEP)
    ).fetchall()
    for (workflow,) in expired:
        for table, column in (("wf_nodes", "workflow"), ("wf_of", "workflow"),
                              ("wf_waits", "workflow"), ("workflows", "id")):  # fmt: skip
            tx.conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (workflow,))


def _finished(status: str) -> bool:
    try:
        return JobStatus(status).finished
    except ValueError:
        return False


def _status(value: str | None) -> JobStatus:
    """A node's status from its column: a job "held" in a limit's line is PENDING, and so is a
    live node without a record."""
    try:
        return JobStatus("pending" if value == "held" else value or "")
    except ValueError:
        return JobStatus.PENDING


def _decoded(data: bytes | None) -> JobResult | None:
    return None if data is None else _RESULT.decode(data)
