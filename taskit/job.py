"""The data that travels: jobs, results, leases and outcomes, as msgspec Structs on msgpack.

A job's arguments are encoded once, when it is prepared, into ``Job.payload``: the msgpack of
``[args, kwargs]``. Brokers store and move those bytes untouched; only the worker that runs the
job decodes them, straight into the handler's annotated parameter types. Nothing here is pickled.
"""

from __future__ import annotations

import enum
import traceback as _traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from taskit._ids import new_job_id
from taskit.errors import SerializationError

__all__ = [
    "MAX_TRACEBACK",
    "SCHEMA_VERSION",
    "Job",
    "JobResult",
    "JobStatus",
    "Lease",
    "LeaseState",
    "Outcome",
    "OutcomeKind",
    "QueueStats",
    "decode_arguments",
    "decode_job",
    "describe_error",
    "encode_arguments",
    "encode_job",
    "encode_value",
    "new_job_id",
    "result_of",
    "storable_text",
    "stored_form",
    "utc_from_timestamp",
]

#: Version of the ``Job`` wire format; bumped on any change a reader of older bytes must know.
SCHEMA_VERSION = 2
#: Tracebacks kept on a job or result are cut to their last this-many characters.
MAX_TRACEBACK = 16_000


class JobStatus(enum.StrEnum):
    """Where a job is in its life. Terminal: COMPLETED, FAILED, DEAD_LETTER, CANCELLED."""

    PENDING = "pending"  #: ready, waiting for a worker
    SCHEDULED = "scheduled"  #: waiting for its ``scheduled_at``
    RUNNING = "running"  #: leased to a worker
    COMPLETED = "completed"  #: the handler returned a successful result
    FAILED = "failed"  #: an expected failure: ``JobResult(success=False)`` or ``Fail``; not retried
    RETRYING = "retrying"  #: failed, waiting for its next attempt
    DEAD_LETTER = "dead_letter"  #: retries spent or not runnable; kept until requeued or purged
    CANCELLED = "cancelled"  #: cancelled before or while it ran

    @property
    def finished(self) -> bool:
        """True for the four terminal states."""
        return self in _FINISHED


_FINISHED = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DEAD_LETTER, JobStatus.CANCELLED}
)


class JobResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The structured outcome of one job.

    A handler's plain return value ``v`` becomes ``JobResult(success=True, value=v)``. A handler may
    return a ``JobResult(success=False, error=...)`` itself: an expected failure, never retried.
    ``duration`` is the handler's run time in seconds (filled in by the worker).

    A failure is stored as text, the same way whether it was raised or returned: ``error`` the
    message, ``error_type`` the exception's qualified type name, ``traceback`` the formatted
    traceback (see ``describe_error``). ``error`` may be given as an exception, as in
    ``JobResult(success=False, error=exc)``: it is turned into those three fields at once (a
    type or traceback given as well is kept).
    """

    success: bool
    value: Any = None
    error: str | None = None
    error_type: str | None = None
    duration: float | None = None
    traceback: str | None = None

    if TYPE_CHECKING:  # the constructor also takes an exception as ``error`` (__post_init__)

        def __init__(
            self,
            *,
            success: bool,
            value: Any = None,
            error: str | BaseException | None = None,
            error_type: str | None = None,
            duration: float | None = None,
            traceback: str | None = None,
        ) -> None: ...

    def __post_init__(self) -> None:
        error: object = self.error
        if isinstance(error, BaseException):
            self.error, error_type, traceback = describe_error(error)
            self.error_type = self.error_type or error_type
            self.traceback = self.traceback or traceback


class Job(
    msgspec.Struct,
    kw_only=True,
    omit_defaults=True,
    array_like=True,
    tag_field="v",
    tag=SCHEMA_VERSION,
):
    """One unit of work and its state.

    ``attempts`` counts runs started (it is incremented when a worker reserves the job), so the
    second run of a job shows ``attempts == 2``. ``max_retries=3`` allows four runs in all.
    ``error`` and ``traceback`` hold the most recent failure, also after a later retry succeeds.
    Times are timezone-aware UTC datetimes. On the wire a job is a msgpack array: first
    ``SCHEMA_VERSION``, then the fields in the order below, trailing defaults left out (a small
    job is about half the size of a keyed map). Bytes of another version fail to decode (and are
    dead-lettered) rather than being misread. A new optional field goes at the end and does not
    change the version; anything else does.
    """

    id: str
    task: str
    queue: str
    payload: msgspec.Raw
    created_at: datetime
    priority: int = 0
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    max_retries: int = 3
    timeout: float | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    result: JobResult | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    created_by: str | None = None

    @property
    def args(self) -> tuple[Any, ...]:
        """The positional arguments, decoded to plain msgpack types (no annotation applied)."""
        return tuple(_decode_arguments(self.payload)[0])

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments, decoded to plain msgpack types (no annotation applied)."""
        return _decode_arguments(self.payload)[1]

    def to_builtins(self) -> dict[str, Any]:
        """A JSON-friendly dict of the job, with ``args``/``kwargs`` in place of the raw payload."""
        fields = {f: getattr(self, f) for f in self.__struct_fields__ if f != "payload"}
        data: dict[str, Any] = msgspec.to_builtins(fields)
        data["args"], data["kwargs"] = msgspec.to_builtins(list(_decode_arguments(self.payload)))
        return data


class Lease(msgspec.Struct, frozen=True):
    """A reserved job: only the holder of ``token`` may settle or extend it, until ``deadline``.

    ``deadline`` is in seconds since the epoch on the broker's clock.
    """

    job: Job
    token: str
    deadline: float


class LeaseState(enum.StrEnum):
    """What the broker says of a lease when the worker extends it."""

    HELD = "held"  #: still yours; the deadline moved
    LOST = "lost"  #: expired and reclaimed, or the job is gone: stop and drop the outcome
    CANCELLED = "cancelled"  #: cancel was requested: stop the handler and settle as CANCEL


class OutcomeKind(enum.StrEnum):
    """How a worker settles a lease."""

    COMPLETE = "complete"  #: success: status COMPLETED, ``result`` kept
    FAIL = "fail"  #: expected failure: status FAILED, not retried
    RETRY = "retry"  #: status RETRYING, runnable again after ``delay`` seconds
    DEAD_LETTER = "dead_letter"  #: status DEAD_LETTER, moved to the queue's dead letters
    CANCEL = "cancel"  #: status CANCELLED (a running job whose cancel was requested)
    RELEASE = "release"  #: hand back unrun (shutdown): PENDING at once, the attempt refunded


class Outcome(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The settlement of one lease, as sent to ``Broker.settle``."""

    job_id: str
    token: str
    kind: OutcomeKind
    result: JobResult | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    delay: float = 0.0


class QueueStats(msgspec.Struct, kw_only=True):
    """Counts for one queue; ``completed`` and ``failed`` are totals since its counters began."""

    queued: int = 0
    scheduled: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    dead: int = 0


_ENCODER = msgspec.msgpack.Encoder()
_JOB_DECODER = msgspec.msgpack.Decoder(Job)
_ARGS_DECODER = msgspec.msgpack.Decoder(tuple[list[Any], dict[str, Any]])


def utc_from_timestamp(seconds: float) -> datetime:
    """Seconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def describe_error(error: BaseException) -> tuple[str, str, str]:
    """How taskit stores a failure: ``(error, error_type, traceback)``, all text.

    ``error`` is ``str(error)``, or the type's name when that is empty; ``error_type`` the type's
    qualified name (``__qualname__``: ``ValueError``, ``Client.Declined``); ``traceback`` the
    formatted traceback (``traceback.format_exception``: only the last line for an exception
    that was never raised), cut to its last ``MAX_TRACEBACK`` characters. Lone surrogates, which
    msgpack cannot carry, are escaped (``\\udc80``). The same three fields are kept on ``Job``,
    ``JobResult`` and ``Outcome``, whether the handler raised the exception or returned it.
    """
    name = type(error).__name__
    try:  # a user's exception is any code: its __str__ may raise, or return a non-string
        message = str(error) or name
    except Exception as exc:
        message = f"<{name}: str() raised {type(exc).__name__}>"
    try:
        trace = "".join(_traceback.format_exception(error))[-MAX_TRACEBACK:]
    except Exception as exc:  # pragma: no cover - traceback guards str() itself
        trace = f"<traceback of {name} could not be formatted: {type(exc).__name__}>"
    return storable_text(message), storable_text(type(error).__qualname__), storable_text(trace)


def storable_text(text: str) -> str:
    """``text`` as msgpack can carry it: lone surrogates escaped, anything else unchanged."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def encode_value(value: Any) -> bytes:
    """msgpack-encode ``value``; raises ``SerializationError`` naming its type."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
        raise SerializationError(  # RecursionError: a value that contains itself
            f"cannot encode a value of type {type(value).__name__}: {exc}"
        ) from exc


def encode_arguments(
    args: Sequence[Any], kwargs: dict[str, Any], names: Sequence[str] = ()
) -> msgspec.Raw:
    """Encode ``[args, kwargs]`` as a job payload.

    ``names`` are the parameter names of the positional arguments, used only to name the culprit
    when a value cannot be encoded: the ``SerializationError`` says which argument and why.
    """
    try:
        return msgspec.Raw(_ENCODER.encode((args, kwargs)))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        labelled = [
            (f"argument {names[i]!r}" if i < len(names) else f"positional argument {i}", value)
            for i, value in enumerate(args)
        ]
        labelled += [(f"argument {key!r}", value) for key, value in kwargs.items()]
        for label, value in labelled:
            try:
                _ENCODER.encode(value)
            except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as inner:
                raise SerializationError(
                    f"{label} cannot be serialized (type {type(value).__name__}): {inner}"
                ) from inner
        raise SerializationError(f"arguments cannot be serialized: {exc}") from exc


def _decode_arguments(payload: msgspec.Raw) -> tuple[list[Any], dict[str, Any]]:
    try:
        return _ARGS_DECODER.decode(payload)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"job payload does not decode as [args, kwargs]: {exc}") from exc


def decode_arguments(payload: msgspec.Raw) -> tuple[list[Any], dict[str, Any]]:
    """Decode a job payload into plain ``(args, kwargs)``; ``SerializationError`` if malformed."""
    return _decode_arguments(payload)


def encode_job(job: Job) -> bytes:
    """The wire form of a job."""
    return _ENCODER.encode(job)


def decode_job(data: bytes | memoryview) -> Job:
    """Decode a job; ``SerializationError`` (naming the problem) if the bytes are not a job."""
    try:
        return _JOB_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"stored bytes are not a valid job: {exc}") from exc


def stored_form(job: Job) -> tuple[Job, bytes]:
    """``job`` as a broker stores it when it is enqueued, and its spec: the bytes to store.

    The stored job is pending, with attempts, times, error and result cleared (``job`` itself
    when they already are, as for every job ``prepare`` makes). The spec is its encoding with an
    empty id (the record's key holds the id), checked to decode back: a payload that is not
    msgpack, or a field of the wrong type, raises ``SerializationError`` and nothing is stored.
    """
    stored = job if _is_fresh(job) else msgspec.structs.replace(job, **_FRESH)
    try:
        spec = _ENCODER.encode(msgspec.structs.replace(stored, id=""))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise SerializationError(f"job {job.id!r} cannot be serialized: {exc}") from exc
    decode_job(spec)  # a payload that is not msgpack encodes as it is, but must not be stored
    return stored, spec


#: The fields an enqueue resets (``stored_form``).
_FRESH: dict[str, Any] = {
    "status": JobStatus.PENDING,
    "attempts": 0,
    "scheduled_at": None,
    "started_at": None,
    "completed_at": None,
    "failed_at": None,
    "result": None,
    "error": None,
    "error_type": None,
    "traceback": None,
}


def _is_fresh(job: Job) -> bool:
    """Whether ``job`` already has every ``_FRESH`` value (checked field by field: faster than
    ``msgspec.structs.replace`` with ten keywords)."""
    return (
        job.status is JobStatus.PENDING
        and job.attempts == 0
        and job.scheduled_at is None
        and job.started_at is None
        and job.completed_at is None
        and job.failed_at is None
        and job.result is None
        and job.error is None
        and job.error_type is None
        and job.traceback is None
    )


def result_of(job: Job) -> JobResult:
    """The ``JobResult`` of a finished job (one is made up for a cancelled or dead job). A failed
    result carries the job's traceback when it has none of its own (a raised failure's traceback
    is stored once, on the job)."""
    result = job.result
    if result is not None:
        if result.success or result.traceback is not None or job.traceback is None:
            return result
        return msgspec.structs.replace(result, traceback=job.traceback)
    if job.status is JobStatus.CANCELLED:
        return JobResult(success=False, error="job was cancelled", error_type="Cancelled")
    return JobResult(
        success=False, error=job.error, error_type=job.error_type, traceback=job.traceback
    )
