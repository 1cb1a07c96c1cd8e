"""``settle`` on SQLite: each outcome applied to its job if its token holds it, in one
transaction for the call (see ``Broker.settle``)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from taskit.broker.sqlite import fair, limits
from taskit.broker.sqlite.moves import ALIVE, back_ranks, finish, front_ranks
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
    "SELECT rank, cancel, attempts, started, failures FROM jobs "
    "WHERE id = ? AND token = ? AND status = 'running'"
)


def settle(
    tx: Tx, checked: Sequence[tuple[Outcome, bytes] | None], default_ttl: float
) -> list[bool]:
    """Apply each outcome (``None``: one that names no lease, answered ``False``), as
    ``taskit._storable.storable`` made it: the outcome and its result's bytes."""
    applied: list[bool] = []
    fronts: list[tuple[int, str]] = []  # (rank when reserved, id): ready again at the front
    freed: list[str] = []  # jobs let out of limit lines by the slots the settled jobs held
    for given in checked:
        if given is None:
            applied.append(False)
            continue
        outcome, result = given
        row = tx.conn.execute(_HELD, (outcome.job_id, outcome.token)).fetchone()
        if row is None:
            applied.append(_settled_as(tx, outcome))
            continue
        if _apply(tx, outcome, result or None, row, default_ttl):
            fronts.append((row[0], outcome.job_id))
        freed += limits.release(tx, outcome.job_id)
        tx.conn.execute(
            "UPDATE jobs SET settled = ? WHERE id = ?",
            (f"{outcome.token} {outcome.kind.value}", outcome.job_id),
        )
        applied.append(True)
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


def _settled_as(tx: Tx, outcome: Outcome) -> bool:
    """Whether ``outcome`` (same token, same kind) was applied already: a retried settle."""
    row = tx.conn.execute(
        f"SELECT 1 FROM jobs WHERE id = ? AND settled = ? AND {ALIVE}",
        (outcome.job_id, f"{outcome.token} {outcome.kind.value}", tx.now),
    ).fetchone()
    return row is not None


def _apply(
    tx: Tx,
    outcome: Outcome,
    result: bytes | None,
    row: tuple[int, int, int, float | None, bytes | None],
    default_ttl: float,
) -> bool:
    """Apply a held job's outcome. True: it is pending again, at the front of its priority."""
    _, cancel, attempts, started, failures = row
    job_id, kind, now = outcome.job_id, outcome.kind, tx.now
    if cancel and kind in (OutcomeKind.RETRY, OutcomeKind.RELEASE):
        kind = OutcomeKind.CANCEL  # a cancel requested while it ran wins over a rerun
    conn = tx.conn
    if outcome.error is not None:
        conn.execute(
            "UPDATE jobs SET error = ?, error_type = ?, traceback = ? WHERE id = ?",
            (outcome.error, outcome.error_type, outcome.traceback, job_id),
        )
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
        conn.execute(
            "UPDATE jobs SET failures = ?, failed = ? WHERE id = ?",
            (encode_failures(history), now, job_id),
        )
    conn.execute("UPDATE jobs SET token = NULL, deadline = NULL WHERE id = ?", (job_id,))
    if kind in _ENDS:
        if kind is not OutcomeKind.CANCEL:
            conn.execute("UPDATE jobs SET result = ? WHERE id = ?", (result, job_id))
        ttl = default_ttl if outcome.result_ttl is None else outcome.result_ttl
        finish(tx, job_id, _ENDS[kind], ttl)
        return False
    if kind is OutcomeKind.DEAD_LETTER:
        (rank,) = back_ranks(tx, 1)
        conn.execute(
            "UPDATE jobs SET status = 'dead_letter', completed = ?, rank = ? WHERE id = ?",
            (now, rank, job_id),
        )
        return False
    if kind is OutcomeKind.RETRY and outcome.delay > 0:
        due = shown_time(now + outcome.delay)
        conn.execute(
            "UPDATE jobs SET status = 'retrying', due = ?, sched = ? WHERE id = ?",
            (due, due, job_id),
        )
        return False
    if kind is OutcomeKind.RELEASE:  # shutdown handed it back unrun: the attempt is refunded
        conn.execute("UPDATE jobs SET attempts = max(attempts - 1, 0) WHERE id = ?", (job_id,))
    conn.execute("UPDATE jobs SET status = 'pending' WHERE id = ?", (job_id,))
    return True


def _history(failures: bytes | None) -> tuple[Attempt, ...]:
    """A job's failures so far; an unreadable history is started afresh (a settle never
    fails on what it cannot read)."""
    if failures is None:
        return ()
    try:
        return _ATTEMPTS.decode(failures)
    except (msgspec.DecodeError, TypeError):
        return ()
