"""How a row of the ``jobs`` table reads back as a ``Job``, and the stored forms of what a row
holds besides its spec (failures, results, times).

A row keeps what a job is (``spec``: the encoded ``JobSpec``) apart from where it stands (the
other columns), as the Redis broker's record does; ``job_of`` lays the one over the other.
Times are float seconds since the epoch on the broker's clock.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import msgspec

from taskit.broker.checks import stand_in
from taskit.errors import CorruptJobError, SerializationError
from taskit.job import (
    Attempt,
    Job,
    JobResult,
    JobSpec,
    JobStatus,
    Progress,
    decode_spec,
    job_of,
    utc_from_timestamp,
)

__all__ = [
    "COLUMNS",
    "LATEST",
    "encode_failures",
    "read_job",
    "shown_time",
]

#: The columns ``read_job`` reads, in its order.
COLUMNS = (
    "id, queue, status, attempts, sched, started, completed, failed, error, error_type, "
    "traceback, failures, result, progress, spec"
)
#: The latest time a datetime can show; a job due later shows this and, in effect, never falls
#: due (a delay of ``inf``).
LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()

_ENCODER = msgspec.msgpack.Encoder()
_FAILURES = msgspec.msgpack.Decoder(tuple[Attempt, ...])
_RESULT = msgspec.msgpack.Decoder(JobResult)
_PROGRESS = msgspec.msgpack.Decoder(Progress)


def shown_time(seconds: float) -> float:
    """``seconds`` as a row stores a due time: at most ``LATEST``."""
    return min(seconds, LATEST)


def encode_failures(failures: tuple[Attempt, ...]) -> bytes | None:
    """The stored form of a job's failures (None: none)."""
    return _ENCODER.encode(failures) if failures else None


def read_job(row: sqlite3.Row | tuple[Any, ...], *, placeholder: bool = False) -> Job:
    """The ``Job`` of a row read with ``COLUMNS``. ``CorruptJobError`` naming the job and the
    column that does not read back; a spec that does not decode is one too, unless
    ``placeholder``: then the job is a stand-in (no task, no arguments) whose error, unless it
    has its own, names the problem."""
    (job_id, queue, status, attempts, sched, started, completed, failed, error, error_type,
     traceback, failures, result, progress, spec) = row  # fmt: skip
    try:  # a job "held" in a limit's line is PENDING (``limits``)
        live: dict[str, Any] = {"status": JobStatus("pending" if status == "held" else status)}
    except ValueError:
        raise CorruptJobError(job_id, "status", f"holds {status!r}") from None
    if not isinstance(attempts, int):
        raise CorruptJobError(job_id, "attempts", f"holds {attempts!r}")
    live["attempts"] = attempts
    for name, value in (("scheduled_at", sched), ("started_at", started),
                        ("completed_at", completed), ("failed_at", failed)):  # fmt: skip
        if value is not None:
            live[name] = _time(job_id, name, value)
    for name, value in (("error", error), ("error_type", error_type), ("traceback", traceback)):
        if value is not None:
            if not isinstance(value, str):
                raise CorruptJobError(job_id, name, f"holds {value!r:.80}")
            live[name] = value
    live["failures"] = _decoded(job_id, "failures", _FAILURES, failures) or ()
    live["result"] = _decoded(job_id, "result", _RESULT, result)
    live["progress"] = _decoded(job_id, "progress", _PROGRESS, progress)
    try:
        decoded: JobSpec = decode_spec(spec)
    except SerializationError as exc:
        if not placeholder:
            raise CorruptJobError(job_id, "spec", f"does not decode: {exc}") from None
        decoded = stand_in(queue)
        if error is None:
            live["error"], live["error_type"] = str(exc), SerializationError.__name__
    return job_of(decoded, job_id, queue, live)


def _time(job_id: str, name: str, value: object) -> datetime:
    if not isinstance(value, (int, float)):
        raise CorruptJobError(job_id, name, f"holds {value!r:.80}")
    return utc_from_timestamp(min(float(value), LATEST))


def _decoded(job_id: str, name: str, decoder: msgspec.msgpack.Decoder[Any], data: Any) -> Any:
    if data is None:
        return None
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, TypeError) as exc:
        raise CorruptJobError(job_id, name, f"does not decode: {exc}") from None
