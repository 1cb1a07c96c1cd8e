"""Rows of script replies as Jobs and Leases: the decoding the answers of ``requests`` share.

A record comes back from a script as (spec, state, error, result, progress) bytes; ``job_from``
makes it a Job (a stand-in when only its spec does not decode). Reserve and reclaim give leased rows
``(q, id, spec, state, error)``; ``leased`` makes them Leases, and the outcomes to settle at
once for the rows that cannot run (unreadable records, reclaimed jobs whose cancel was asked).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from taskit.broker.checks import corrupt_job
from taskit.broker.redis.records import (
    build_job,
    merge_spec,
    parse_state,
    placeholder_job,
    split_record,
)
from taskit.errors import CorruptJobError, SerializationError
from taskit.job import Job, Lease, Outcome, OutcomeKind, decode_spec_job

__all__ = ["dead_letter", "job_from", "leased"]


def job_from(
    job_id: str, spec: bytes, state: bytes, err: bytes, res: bytes, prog: bytes = b""
) -> Job:
    """The Job of a record; a stand-in when only its spec does not decode.
    ``CorruptJobError`` when its state, error, result or progress is unreadable."""
    try:
        job = build_job(job_id, spec, state, err, res, prog)
    except (SerializationError, msgspec.DecodeError) as exc:
        why = f"stored job does not decode: {exc}"
        return placeholder_job(job_id, state, err, res, why, prog)
    return job


def dead_letter(queue: str, raw_id: bytes, spec: bytes, state: bytes, err: bytes) -> Job:
    """A dead letter as a Job; a stand-in naming the problem when its record or its id is
    unreadable (a listing must show every dead letter, never fail on one)."""
    job_id = raw_id.decode(errors="backslashreplace")
    try:
        if not raw_id.isascii():
            raw_id.decode()
        if not state:  # the script could not split the record
            parse_state(split_record(spec, job_id)[0], job_id)
        return job_from(job_id, spec, state, err, b"")
    except UnicodeDecodeError:
        return corrupt_job(job_id, queue, f"job id {job_id!r} is not UTF-8")
    except CorruptJobError as exc:
        return corrupt_job(job_id, queue, str(exc))


def leased(
    queues: Sequence[str], rows: Sequence[Any], deadline: float, *, reclaimed: bool
) -> tuple[list[Lease], list[Outcome]]:
    """Leases from (q, id, spec, state, err) rows, and the outcomes to settle at once:
    DEAD_LETTER for a job that does not decode; CANCEL for a reclaimed job whose cancel was
    requested (a reserved one runs: its worker learns of the cancel when it extends)."""
    leases: list[Lease] = []
    now: list[Outcome] = []
    for i in range(0, len(rows), 5):
        q, raw_id, spec, state, err = rows[i : i + 5]
        queue = queues[int(q) - 1]
        # An id that is not UTF-8 (damaged data) is settled under its very bytes (see
        # transport.packing).
        job_id = raw_id.decode(errors="surrogateescape")
        try:
            if not raw_id.isascii():
                raw_id.decode()  # an id taskit never writes: a dead letter with a reason
            parsed = parse_state(state, job_id)
            job = merge_spec(decode_spec_job(spec), job_id, parsed, err, b"")
        except UnicodeDecodeError:
            shown = raw_id.decode(errors="backslashreplace")
            token = _token(state, queue)
            now.append(_unreadable(job_id, token, CorruptJobError(shown, "id", "is not UTF-8")))
            continue
        except (SerializationError, CorruptJobError, msgspec.DecodeError) as exc:
            now.append(_unreadable(job_id, _token(state, queue), exc))
            continue
        token = f"{parsed.token}|{queue}"  # as ``_token`` reads it: the state parsed
        if parsed.cancel and reclaimed:  # its cancel was requested: it ends CANCELLED
            now.append(_cancelled(job, token))
            continue
        leases.append(Lease(job=job, token=token, deadline=deadline))
    return leases, now


def _token(state: bytes, queue: str) -> str:
    """The lease token of a leased row: the script checked the state and wrote it anew, so its
    field 5 is the token it gave, even where the state does not parse."""
    return f"{state.split(b'|', 5)[4].decode(errors='replace')}|{queue}"


def _cancelled(job: Job, token: str) -> Outcome:
    """The CANCEL outcome of a reclaimed job whose cancel was requested (kept its
    ``result_ttl``, as every job that ends)."""
    return Outcome(job_id=job.id, token=token, kind=OutcomeKind.CANCEL, result_ttl=job.result_ttl)


def _unreadable(job_id: str, token: str, exc: Exception) -> Outcome:
    """The DEAD_LETTER outcome of a leased job whose stored bytes do not decode."""
    return Outcome(
        job_id=job_id,
        token=token,
        kind=OutcomeKind.DEAD_LETTER,
        error=f"stored job does not decode: {exc}",
        error_type=type(exc).__name__,
    )
