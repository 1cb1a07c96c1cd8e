"""``settle`` on SQLite: each outcome applied to its job if its token holds it, in one
transaction for the call (see ``Broker.settle``)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from taskit.broker.sqlite import fair, limits, tally
from taskit.broker.sqlite.moves import ALIVE, back_ranks, front_ranks
from taskit.broker.sqlite.records import encode_failures, shown_time
from taskit.broker.sqlite.store import Tx
from taskit.job import (
    MAX_FAILURES,
    Attempt,
    JobStatus,
    Outcome,
    OutcomeKind,
    utc_from_timestamp,
)

__all__ = ["settle"]

#: The outcomes that end an attempt in a failure: each is kept in ``Job.failures``.
_FAILURES = frozenset({OutcomeKind.RETRY, OutcomeKind.FAIL, OutcomeKind.DEAD_LETTER})
_ATTEMPTS = msgspec.msgpack.Decoder(tuple[Attempt, ...])
_ENDS = {
    OutcomeKind.COMPLETE: JobStatus.COMPLETED,
    OutcomeKind.FAIL: JobStatus.FAILED,
    OutcomeKind.CANCEL: JobStatus.CANCELLED,
}
_HELD = (
    "SELECT rank, cancel, attempts, started, failures, queue, leased_at, limit_keys FROM jobs "
    "WHERE id = ? AND token = ? AND status = 'running'"
)
# A COMPLETE without an error: the held job looked up, then ``_apply``'s sets for it in one
# statement by its rowid (an ``UPDATE ... RETURNING`` builds a temp b-tree each time).
_HELD_COMPLETE = (
    "SELECT seq, queue, leased_at, limit_keys FROM jobs "
    "WHERE id = ? AND token = ? AND status = 'running'"
)
_COMPLETE = (
    "UPDATE jobs SET token = NULL, deadline = NULL, settled = ?, result = ?, "
    "status = 'completed', completed = ?, due = NULL, expires = ? WHERE seq = ?"
)
_Held = tuple[int, int, int, float | None, bytes | None, str, float | None, str | None]


def settle(
    tx: Tx, checked: Sequence[tuple[Outcome, bytes] | None], default_ttl: float
) -> list[bool]:
    """Apply each outcome (``None``: one that names no lease, answered ``False``), as
    ``taskit._storable.storable`` made it: the outcome and its result's bytes. Each applied
    outcome is one ``UPDATE`` of its row; the per-minute counts are added once a call."""
    applied: list[bool] = []
    fronts: list[tuple[int, str]] = []  # (rank when reserved, id): ready again at the front
    freed: list[str] = []  # jobs let out of limit lines by the slots the settled jobs held
    counted: list[tuple[str, float | None, OutcomeKind]] = []  # for ``tally.settled``
    for given in checked:
        if given is None:
            applied.append(False)
            continue
        outcome, result = given
        done = _settle_one(tx, outcome, result or None, default_ttl)
        if done is None:
            applied.append(_settled_as(tx, outcome))
            continue
        kind, rank, queue, leased_at, keys = done
        counted.append((queue, leased_at, kind))
        if kind is OutcomeKind.RELEASE or (kind is OutcomeKind.RETRY and not outcome.delay > 0):
            fronts.append((rank, outcome.job_id))
        if keys is not None:  # only a job with limit keys can hold slots
            freed += limits.release(tx, outcome.job_id)
        applied.append(True)
    tally.settled(tx, counted)
    if fronts:  # in the order they were reserved, ahead of every waiting job
        fronts.sort()
        ranks = front_ranks(tx, len(fronts))
        tx.conn.executemany(
            "UPDATE jobs SET rank = ? WHERE id = ?",
            [(rank, job_id) for rank, (_, job_id) in zip(ranks, fronts, strict=True)],
        )
        tx.ready = True
    fair.front(tx, [job_id for _, job_id in fronts] + freed)
    return applied


def _settle_one(
    tx: Tx, outcome: Outcome, result: bytes | None, default_ttl: float
) -> tuple[OutcomeKind, int, str, float | None, str | None] | None:
    """Apply ``outcome`` to the job its token holds: the kind applied, the job's rank, queue,
    lease start and limit keys; None if the token holds no running job. A COMPLETE without an
    error needs little of the row (a cancel request changes nothing of it): where it stands,
    then one ``UPDATE`` with ``_apply``'s sets for it; any other outcome reads the row first."""
    if outcome.kind is OutcomeKind.COMPLETE and outcome.error is None:
        ttl = default_ttl if outcome.result_ttl is None else outcome.result_ttl
        held = tx.conn.execute(_HELD_COMPLETE, (outcome.job_id, outcome.token)).fetchone()
        if held is None:
            return None
        settled = f"{outcome.token} {outcome.kind.value}"  # a retried settle is known
        tx.conn.execute(_COMPLETE, (settled, result, tx.now, tx.now + ttl, held[0]))
        return OutcomeKind.COMPLETE, 0, *held[1:]
    row: _Held | None = tx.conn.execute(_HELD, (outcome.job_id, outcome.token)).fetchone()
    if row is None:
        return None
    return _apply(tx, outcome, result, row, default_ttl), row[0], row[5], row[6], row[7]


def _settled_as(tx: Tx, outcome: Outcome) -> bool:
    """Whether ``outcome`` (same token, same kind) was applied already: a retried settle."""
    row = tx.conn.execute(
        f"SELECT 1 FROM jobs WHERE id = ? AND settled = ? AND {ALIVE}",
        (outcome.job_id, f"{outcome.token} {outcome.kind.value}", tx.now),
    ).fetchone()
    return row is not None


def _apply(
    tx: Tx, outcome: Outcome, result: bytes | None, row: _Held, default_ttl: float
) -> OutcomeKind:
    """Apply a held job's outcome in one ``UPDATE``; the kind applied (a cancel requested
    while it ran turns a RETRY or RELEASE into CANCEL). A RELEASE, or a RETRY without delay,
    leaves it PENDING again (the caller puts it at the front of its priority)."""
    _, cancel, attempts, started, failures = row[:5]
    kind, now = outcome.kind, tx.now
    if cancel and kind in (OutcomeKind.RETRY, OutcomeKind.RELEASE):
        kind = OutcomeKind.CANCEL  # a cancel requested while it ran wins over a rerun
    sets: dict[str, object] = {
        "token": None,
        "deadline": None,
        "settled": f"{outcome.token} {outcome.kind.value}",  # a retried settle is known
    }
    if outcome.error is not None:
        sets.update(error=outcome.error, error_type=outcome.error_type, traceback=outcome.traceback)
    if kind in _FAILURES:  # the attempt's history, kept with its error
        attempt = Attempt(
            attempts,
            None if started is None else utc_from_timestamp(started),
            utc_from_timestamp(now),
            kind,
            outcome.error,
            outcome.error_type,
        )
        history = (*_history(failures)[1 - MAX_FAILURES :], attempt)
        sets.update(failures=encode_failures(history), failed=now)
    if kind in _ENDS:  # as ``moves.finish`` ends a job
        if kind is not OutcomeKind.CANCEL:
            sets["result"] = result
        ttl = default_ttl if outcome.result_ttl is None else outcome.result_ttl
        sets.update(status=_ENDS[kind].value, completed=now, due=None, expires=now + ttl)
    elif kind is OutcomeKind.DEAD_LETTER:
        (rank,) = back_ranks(tx, 1)
        sets.update(status="dead_letter", completed=now, rank=rank)
    elif kind is OutcomeKind.RETRY and outcome.delay > 0:
        due = shown_time(now + outcome.delay)
        sets.update(status="retrying", due=due, sched=due)
    else:
        if kind is OutcomeKind.RELEASE:  # shutdown handed it back unrun: the attempt is refunded
            sets["attempts"] = max(attempts - 1, 0)
        sets["status"] = "pending"
    columns = ", ".join(f"{column} = ?" for column in sets)
    tx.conn.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*sets.values(), outcome.job_id))
    return kind


def _history(failures: bytes | None) -> tuple[Attempt, ...]:
    """A job's failures so far; an unreadable history is started afresh (a settle never
    fails on what it cannot read)."""
    if failures is None:
        return ()
    try:
        return _ATTEMPTS.decode(failures)
    except (msgspec.DecodeError, TypeError):
        return ()
