"""The data that travels: jobs, results, leases and outcomes, as msgspec Structs on msgpack.

A job is two things kept apart: what it is (``JobSpec``: task, arguments, options; stored once
at enqueue and never changed) and where it stands (``LIVE_FIELDS``: status, attempts, times,
error, result; owned by the broker). ``Job`` is the read model, both in one object, built by a
broker from the two (``job_of``); ``stored_form`` is the one way to a spec's bytes.

A job's arguments are encoded once, when it is prepared, into ``Job.payload``: the msgpack of
``[args, kwargs]``. Brokers store and move those bytes untouched; only the worker that runs the
job decodes them, straight into the handler's annotated parameter types. Nothing here is pickled.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from taskit._ids import new_job_id
from taskit._values import (
    MAX_TRACEBACK,
    decode_arguments,
    describe_error,
    encode_arguments,
    encode_value,
    storable_text,
    utc_from_timestamp,
)
from taskit.dedup import Dedup
from taskit.dependencies import After
from taskit.errors import SerializationError

__all__ = [
    "LIVE_FIELDS",
    "MAX_FAILURES",
    "MAX_TRACEBACK",
    "SCHEMA_VERSION",
    "Attempt",
    "Job",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "KeptJob",
    "Lease",
    "LeaseState",
    "Outcome",
    "OutcomeKind",
    "Progress",
    "ProgressUpdate",
    "QueueStats",
    "decode_arguments",
    "decode_job",
    "decode_progress",
    "decode_spec",
    "decode_spec_job",
    "describe_error",
    "encode_arguments",
    "encode_job",
    "encode_progress",
    "encode_spec",
    "encode_value",
    "job_of",
    "kept_job",
    "new_job_id",
    "result_of",
    "storable_text",
    "stored_form",
    "utc_from_timestamp",
]

#: Version of the ``Job`` wire format; bumped on any change a reader of older bytes must know.
SCHEMA_VERSION = 2


class JobStatus(enum.StrEnum):
    """Where a job is in its life. Terminal: COMPLETED, FAILED, DEAD_LETTER, CANCELLED."""

    PENDING = "pending"  #: ready, waiting for a worker
    #: waiting for the jobs it depends on (``Job.after``) to end; in no queue until then
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"  #: waiting for its ``scheduled_at``
    RUNNING = "running"  #: leased to a worker
    COMPLETED = "completed"  #: the handler returned a successful result
    #: an expected failure: ``JobResult(success=False)``, ``Fail``, or an exception its task does
    #: not retry (``retry_on`` / ``dont_retry_on``); not retried
    FAILED = "failed"
    RETRYING = "retrying"  #: failed, waiting for its next attempt
    DEAD_LETTER = "dead_letter"  #: retries spent or not runnable; kept until requeued or purged
    CANCELLED = "cancelled"  #: cancelled before or while it ran, or expired before it started

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


class Progress(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """How far a running job says it has come: the latest ``taskit.report_progress`` call.

    ``fraction`` is in 0..1 (None: not said), ``message`` a short text, ``data`` small
    msgpack-able metadata, ``updated_at`` when the job reported it (timezone-aware UTC). A
    broker stores it with the job (``Job.progress``, shown by ``get``) for as long as the job's
    record; the checks on what a handler may report are in ``taskit.progress``.
    """

    updated_at: datetime
    fraction: float | None = None
    message: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class ProgressUpdate(msgspec.Struct, frozen=True):
    """One job's latest progress as a worker sends it to ``Broker.set_progress``, fenced by the
    lease ``token`` it runs under."""

    job_id: str
    token: str
    progress: Progress


#: The most failed attempts a job keeps (``Job.failures``): the newest, the older ones dropped.
MAX_FAILURES = 20


class Attempt(msgspec.Struct, frozen=True, array_like=True):
    """One attempt of a job that ended in a failure, as ``Job.failures`` keeps it.

    ``number`` is the attempt's number, 1-based: the job's ``attempts`` when it ran (a dead
    letter requeued starts again at 1, see ``Broker.requeue_dead``). ``started_at`` is when the
    lease it ran under began (None if the broker had no start time), ``ended_at`` when the broker
    applied its outcome (the broker's clock); both timezone-aware UTC. ``outcome`` is how it was
    settled: ``OutcomeKind.RETRY``, ``FAIL`` or ``DEAD_LETTER``. ``error`` and ``error_type``
    are the failure's message and type name, as sent with the outcome (None when it sent none);
    the traceback is not kept per attempt (the latest is ``Job.traceback``). On the wire a
    msgpack array of the fields in this order.
    """

    number: int
    started_at: datetime | None
    ended_at: datetime
    outcome: OutcomeKind
    error: str | None = None
    error_type: str | None = None


class Job(
    msgspec.Struct,
    kw_only=True,
    omit_defaults=True,
    array_like=True,
    tag_field="v",
    tag=SCHEMA_VERSION,
):
    """One unit of work and where it stands: the read model a broker hands out.

    What a job is (``JobSpec``: what an enqueue stores) and where it stands (``LIVE_FIELDS``,
    kept by the broker) in one object, built by the broker from the two (``job_of``).
    ``attempts`` counts runs started (it is incremented when a worker reserves the job), so the
    second run of a job shows ``attempts == 2``. ``max_retries=3`` allows four runs in all.
    ``error`` and ``traceback`` hold the most recent failure, also after a later retry succeeds;
    ``failures`` every attempt that ended in a failure (retried, failed or dead-lettered), oldest
    first, at most ``MAX_FAILURES`` (the newest), with its number, times, outcome and error.
    Times are timezone-aware UTC datetimes. On the wire a job is a msgpack array: first
    ``SCHEMA_VERSION``, then every field in the order below, defaults included (msgspec writes
    every position of an ``array_like`` struct; a reader fills positions missing at the end
    with their defaults). Position is the schema: the exact bytes are pinned by
    ``tests/test_wire.py``. Bytes of another version fail to decode (and are dead-lettered)
    rather than being misread. A new optional field goes at the end (of ``JobSpec`` too, which
    then needs a slot for ``failures`` first) and does not change the version; anything else
    does.
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
    #: Not started by then, it is dropped (CANCELLED, ``error_type`` "Expired"), never run.
    expires_at: datetime | None = None
    #: Seconds the broker keeps this job once it is completed, failed or cancelled (``None``:
    #: the broker's ``result_ttl``; 0: dropped at the settle). Dead letters are kept regardless.
    result_ttl: float | None = None
    #: The latest progress the job reported (``taskit.report_progress``), as ``get`` shows it;
    #: None until it reports. Kept after the job ends, for as long as its record.
    progress: Progress | None = None
    #: The concrete limit keys this job needs a slot or a start in (``taskit.limits``):
    #: ``"<name>"`` for a global limit, ``"<name>:<key>"`` for one key of a keyed limit.
    limits: tuple[str, ...] = ()
    #: The job's fairness key in its queue: ready jobs of different groups are served in turns.
    group: str | None = None
    #: The job's dedup window (``taskit.dedup``): throttle or debounce, its key and seconds.
    dedup: Dedup | None = None
    #: The id of the workflow this job is a node of (``taskit.canvas``), if any.
    workflow: str | None = None
    #: The jobs it waits for, and what it is fed from them (``taskit.dependencies``).
    after: After | None = None
    #: The attempts that ended in a failure (settled RETRY, FAIL or DEAD_LETTER), oldest first:
    #: at most ``MAX_FAILURES``, the newest kept. Nothing is added for a success, a release or a
    #: cancel, nor by a reclaim (the reclaimed run's own settle adds it). Kept with the job's
    #: error: on its record, in its dead letter, once it ended; also through ``requeue_dead``.
    #: A live field the read model alone has: not a slot of ``JobSpec`` (its last position).
    failures: tuple[Attempt, ...] = ()
    #: True for a ``KeptJob``: what an enqueue answers in place of a job it did not store.
    duplicate: ClassVar[bool] = False

    @property
    def args(self) -> tuple[Any, ...]:
        """The positional arguments, decoded to plain msgpack types (no annotation applied)."""
        return tuple(decode_arguments(self.payload)[0])

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments, decoded to plain msgpack types (no annotation applied)."""
        return decode_arguments(self.payload)[1]

    def to_builtins(self) -> dict[str, Any]:
        """A JSON-friendly dict of the job, with ``args``/``kwargs`` in place of the raw payload."""
        fields = {f: getattr(self, f) for f in self.__struct_fields__ if f != "payload"}
        data: dict[str, Any] = msgspec.to_builtins(fields)
        data["args"], data["kwargs"] = msgspec.to_builtins(list(decode_arguments(self.payload)))
        data["limits"] = list(self.limits)  # a tuple stays one in to_builtins: JSON has lists
        data["failures"] = [  # by name, not as the arrays they travel as; outcome by value
            msgspec.to_builtins({f: getattr(a, f) for f in a.__struct_fields__})
            for a in self.failures
        ]
        if self.after is not None:  # by name, not as the array it travels as
            after = self.after
            data["after"] = {"jobs": list(after.jobs), "feed": after.feed.value,
                             "if_failed": after.if_failed.value}  # fmt: skip
        return data


#: Where a job stands, as opposed to what it is (``JobSpec``): the fields a broker owns, each
#: with its value before the job first ran. An enqueue resets them (``stored_form``); a broker
#: keeps them apart from the spec (the Redis broker: its state string, error and result) and
#: lays them over the spec when it reads the job back (``job_of``).
LIVE_FIELDS: Mapping[str, Any] = MappingProxyType(
    {
        "status": JobStatus.PENDING,
        "attempts": 0,
        "scheduled_at": None,
        "started_at": None,
        "completed_at": None,
        "failed_at": None,
        "error": None,
        "error_type": None,
        "traceback": None,
        "result": None,
        "progress": None,
        "failures": (),
    }
)


class JobSpec(
    msgspec.Struct,
    kw_only=True,
    omit_defaults=True,
    array_like=True,
    tag_field="v",
    tag=SCHEMA_VERSION,
):
    """What a job is: what a broker stores when it is enqueued, and never changes after.

    Its bytes are the ``Job`` wire format (same tag, same positions) with an empty ``id`` (the
    record's key holds it) and every live field fresh: what released versions write and read.
    It ends where ``Job`` had ended before ``failures``: that last live field of ``Job`` has no
    slot here (a reader fills a position missing at the end with its default, and ignores
    extra ones), so a spec's bytes did not change when ``Job`` grew it.
    Because ``array_like`` makes position the schema and version 2 interleaves what a job is
    with where it stands, the positions of ``LIVE_FIELDS`` stay here as slots of the same
    types, below their own heading. ``encode_spec`` refuses a spec whose slots are not fresh.
    A spec written otherwise still decodes, as before: its slot values stand until the broker's
    state says otherwise (``job_of``), as they did when a spec was decoded as a ``Job``.
    """

    id: str = ""
    task: str
    queue: str
    payload: msgspec.Raw
    created_at: datetime
    priority: int = 0
    # -- slots of LIVE_FIELDS: fresh in every spec taskit writes ------------------------------
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    # -- what a job is, continued -------------------------------------------------------------
    max_retries: int = 3
    timeout: float | None = None
    # -- slots of LIVE_FIELDS: fresh in every spec taskit writes ------------------------------
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    result: JobResult | None = None
    # -- what a job is, continued -------------------------------------------------------------
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    created_by: str | None = None
    expires_at: datetime | None = None
    result_ttl: float | None = None
    # -- slot of LIVE_FIELDS: fresh in every spec taskit writes -------------------------------
    progress: Progress | None = None
    # -- what a job is, continued -------------------------------------------------------------
    limits: tuple[str, ...] = ()
    group: str | None = None
    dedup: Dedup | None = None
    workflow: str | None = None
    after: After | None = None


class KeptJob(Job):
    """A job an enqueue answers in place of the one it was given, which it did not store: a job
    of the same id already waiting or running (unique ids), or the job a dedup window kept
    (``taskit.dedup``: a throttle's first job, or a debounced job given the new arguments).
    ``duplicate`` is True; otherwise it is the ``Job`` as stored, with the same bytes."""

    duplicate: ClassVar[bool] = True


def kept_job(job: Job) -> KeptJob:
    """``job`` as a ``KeptJob`` (the same fields)."""
    return KeptJob(**{name: getattr(job, name) for name in job.__struct_fields__})


_SPEC_FIELDS = JobSpec.__struct_fields__
if Job.__struct_fields__[: len(_SPEC_FIELDS)] != _SPEC_FIELDS:  # pragma: no cover - a bug
    raise TypeError("JobSpec must keep Job's field positions: array_like makes them the schema")
#: The live fields that have a slot in ``JobSpec``: all but those ``Job`` alone has at its end.
_SLOTS = tuple(name for name in LIVE_FIELDS if name in _SPEC_FIELDS)


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
    CANCEL = "cancel"  #: status CANCELLED (a running job whose cancel was requested, or expired)
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
    #: Seconds the broker keeps the job's record once this outcome ends it (COMPLETE, FAIL,
    #: CANCEL); ``None``: the broker's ``result_ttl``. The worker copies its job's ``result_ttl``.
    result_ttl: float | None = None


class QueueStats(msgspec.Struct, kw_only=True):
    """Counts for one queue; ``completed`` and ``failed`` are totals since its counters began."""

    queued: int = 0
    scheduled: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    dead: int = 0
    #: Jobs of the queue waiting for the jobs they depend on (DEFERRED): in no queue structure
    #: yet, counted here so that nothing is out of sight.
    deferred: int = 0


_ENCODER = msgspec.msgpack.Encoder()
_JOB_DECODER = msgspec.msgpack.Decoder(Job)
_SPEC_DECODER = msgspec.msgpack.Decoder(JobSpec)
_PROGRESS_DECODER = msgspec.msgpack.Decoder(Progress)
_astuple = msgspec.structs.astuple
#: Where a spec's fields end in a job's: before ``failures``, a job's last field.
_SPEC_END = len(_SPEC_FIELDS)
#: The live slots of a job or spec as one tuple (a C call), and that tuple when all are fresh.
_live_values = operator.attrgetter(*_SLOTS)
_FRESH_VALUES = tuple(LIVE_FIELDS[name] for name in _SLOTS)


def encode_job(job: Job) -> bytes:
    """The wire form of a job."""
    return _ENCODER.encode(job)


def decode_job(data: bytes | memoryview) -> Job:
    """Decode a job; ``SerializationError`` (naming the problem) if the bytes are not a job."""
    try:
        return _JOB_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"stored bytes are not a valid job: {exc}") from exc


def encode_progress(progress: Progress) -> bytes:
    """The stored form of a job's progress (msgpack); msgspec's ``EncodeError`` or
    ``TypeError`` for data that cannot be encoded (``taskit.progress`` checks that first)."""
    return _ENCODER.encode(progress)


def decode_progress(data: bytes | memoryview) -> Progress:
    """A progress from ``encode_progress``'s bytes; ``SerializationError`` if they are not one."""
    try:
        return _PROGRESS_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"stored bytes are not a valid progress: {exc}") from exc


def encode_spec(spec: JobSpec) -> bytes:
    """The stored bytes of ``spec``. ``ValueError`` if a live slot is not fresh (a spec never
    says where a job stands); msgspec's ``EncodeError`` or ``TypeError`` if a value cannot be
    encoded. The bytes are not checked to decode back: ``stored_form`` does that."""
    if not _is_fresh(spec):
        raise ValueError("a JobSpec's live slots must hold their fresh values (LIVE_FIELDS)")
    return _ENCODER.encode(spec)


def decode_spec(data: bytes | memoryview) -> JobSpec:
    """Decode stored spec bytes; ``SerializationError`` (naming the problem) if they are not a
    spec. Live slots that are not fresh are kept, not refused (see ``JobSpec``)."""
    try:
        return _SPEC_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"stored bytes are not a valid job: {exc}") from exc


def decode_spec_job(data: bytes | memoryview) -> Job:
    """Stored spec bytes decoded as a ``Job`` (its id empty, no ``failures``), for a broker to
    put its own id, queue and live fields in with ``msgspec.structs.replace``: the ``Job`` that
    ``job_of(decode_spec(data), ...)`` builds field by field, in a third of the time (a spec's
    positions are a job's, and its live slots are kept as ``job_of`` keeps them; bytes past a
    spec's end, read as ``failures`` here, are the broker's to drop). ``SerializationError`` as
    ``decode_spec``."""
    try:
        return _JOB_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"stored bytes are not a valid job: {exc}") from exc


def stored_form(job: Job) -> tuple[Job, bytes]:
    """``job`` as a broker stores it when it is enqueued, and its spec: the bytes to store.

    The stored job has every live field fresh (``LIVE_FIELDS``: pending, attempts, times, error
    and result cleared; ``job`` itself when they already are, as for every job ``prepare``
    makes). The spec is the encoded ``JobSpec`` of what the job is, checked to decode back: a
    payload that is not msgpack, or a field of the wrong type, raises ``SerializationError``
    and nothing is stored.
    """
    fresh = _is_fresh(job) and not job.failures
    stored = job if fresh else msgspec.structs.replace(job, **LIVE_FIELDS)
    # A spec's array is the stored job's, but for its empty id and without ``failures`` (its
    # last position, fresh: empty): encoded from the fields' tuple, one C call, not rebuilt as
    # a ``JobSpec`` field by field (which cost three times the encoding itself).
    fields = _astuple(stored)
    try:
        spec = _ENCODER.encode((SCHEMA_VERSION, "", *fields[1:_SPEC_END]))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise SerializationError(f"job {job.id!r} cannot be serialized: {exc}") from exc
    decode_spec(spec)  # a payload that is not msgpack encodes as it is, but must not be stored
    return stored, spec


def job_of(spec: JobSpec, job_id: str, queue: str, live: dict[str, Any]) -> Job:
    """The ``Job`` a broker reads back: what ``spec`` says the job is, with ``job_id``, its
    ``queue`` and where it stands (``live``: values of ``LIVE_FIELDS`` by name) from the
    broker's own state. A live field missing from ``live`` is fresh, or, for a spec whose slots
    are not (see ``JobSpec``), as the spec's slot holds it."""
    if not _is_fresh(spec):
        live = dict(zip(_SLOTS, _live_values(spec), strict=True)) | live
    return Job(
        id=job_id,
        task=spec.task,
        queue=queue,
        payload=spec.payload,
        created_at=spec.created_at,
        priority=spec.priority,
        max_retries=spec.max_retries,
        timeout=spec.timeout,
        metadata=spec.metadata,
        created_by=spec.created_by,
        expires_at=spec.expires_at,
        result_ttl=spec.result_ttl,
        limits=spec.limits,
        group=spec.group,
        dedup=spec.dedup,
        workflow=spec.workflow,
        after=spec.after,
        **live,
    )


def _is_fresh(job: Job | JobSpec) -> bool:
    """Whether every live slot of ``job`` holds its fresh value (``LIVE_FIELDS``; a ``Job``'s
    ``failures``, which a spec has no slot for, is the caller's to check). One tuple
    compare, faster than ``msgspec.structs.replace``; the status by identity, so a status given
    as plain text (``"pending"``) is made the enum member."""
    return job.status is JobStatus.PENDING and _live_values(job) == _FRESH_VALUES


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
