"""The record codec of the Redis broker: what a live record, a state string, an error value and
a lease token look like, and the ``Job`` they describe. (Key names are in ``keys``.)

A live record is ``<n>:<state><spec>``: ``n`` the length of the state string in decimal, then the
state (where the job stands), then its spec (what it is: the encoded ``JobSpec``, written once at
enqueue; one hash field per job keeps Redis memory per queued job low: about 260 bytes for a small
job, see ``benchmarks/redis_memory.py``). The state string is the fields of ``STATE_FIELDS``
joined by ``|``: ``status|attempts|score|seq|token|cancel|sched|started|completed|failed|queue``
(queue last: it may contain ``|``); ``score`` is minus the priority, ``seq`` the ranked-set place
of a job of a non-default priority (``-<15 digits>`` for one put back at the front) or empty;
times are server milliseconds, ``sched`` is seconds text. The scripts write it (``pack_state``
in ``lua/_common.lua``); Python reads it (``parse_state``) and writes it only in tests
(``format_state``); ``tests/test_wire.py`` proves the two languages agree.

Ready jobs of the default priority wait in a list (a few bytes per job, against over a hundred in
a sorted set); other priorities in a sorted set. Jobs are taken from the ranked set's positive
priorities first, then the list, then its negative priorities. A released job (or one retried at
once) goes back to the front of its priority. Cancelling a pending job of the default priority
removes it from the list with ``LREM``: O(n) in the queue's length (see docs/redis.md).

A lease token is ``<random>.<n>|<queue>``: the queue part lets ``settle`` find the job's queue.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from taskit.broker.checks import stand_in
from taskit.errors import CorruptJobError, SerializationError
from taskit.job import (
    Attempt,
    Job,
    JobResult,
    JobSpec,
    JobStatus,
    OutcomeKind,
    Progress,
    decode_spec_job,
    job_of,
    utc_from_timestamp,
)

__all__ = [
    "LATEST",
    "STATE_FIELDS",
    "State",
    "StateField",
    "build_job",
    "decode_error",
    "encode_error",
    "format_state",
    "join_record",
    "merge_spec",
    "merge_state",
    "parse_state",
    "placeholder_job",
    "split_record",
    "split_token",
]


#: The latest time a datetime can show (seconds); a job due later shows this, and never falls due.
LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


class State(NamedTuple):
    """A parsed state string: its fields in ``STATE_FIELDS`` order; times in seconds. (A named
    tuple: every reserved job's state is parsed, and a tuple is made in a fraction of a frozen
    dataclass's time.)"""

    status: JobStatus
    attempts: int
    score: int
    seq: str
    token: str
    cancel: bool
    sched: float | None
    started: float | None
    completed: float | None
    failed: float | None
    queue: str


@dataclass(frozen=True, slots=True)
class StateField:
    """One field of the state string: its name (a ``State`` attribute), the values this layout
    writes (a regular expression: what ``state_fault`` in ``_common.lua`` accepts) and how a
    ``State`` value is written as text."""

    name: str
    pattern: str
    text: Callable[[Any], str]


def _ms_text(seconds: float | None) -> str:
    return "" if seconds is None else str(round(seconds * 1000))


_STATUSES = frozenset(status.value for status in JobStatus)
#: A status by its text (a dict look-up, not ``JobStatus(text)``'s).
_STATUS_OF = {status.value: status for status in JobStatus}
#: The state string, field by field in order (its position in the string is its place here).
STATE_FIELDS = (
    StateField("status", "|".join(sorted(_STATUSES)), lambda status: status.value),
    StateField("attempts", r"\d{1,9}", str),
    StateField("score", r"-?\d{1,21}", str),
    StateField("seq", r"(?:-?\d{1,21})?", str),
    StateField("token", r"[^|]*", str),
    StateField("cancel", r"1?", lambda cancel: "1" if cancel else ""),
    StateField("sched", r"[0-9.eE+-]{0,40}", lambda due: "" if due is None else repr(due)),
    StateField("started", r"\d{0,20}", _ms_text),
    StateField("completed", r"\d{0,20}", _ms_text),
    StateField("failed", r"\d{0,20}", _ms_text),
    StateField("queue", r".*", str),  # last: it may contain "|"
)
if tuple(f.name for f in STATE_FIELDS) != State._fields:
    raise TypeError("State must list the fields of STATE_FIELDS, in order")  # pragma: no cover
_CHECKS = tuple((f.name, re.compile(f.pattern, re.DOTALL)) for f in STATE_FIELDS)
#: A whole well-formed state string at once (the common case: one match, no per-field work).
_STATE = re.compile(r"\|".join(f"({f.pattern})" for f in STATE_FIELDS), re.DOTALL)


def _ms(text: str) -> float | None:
    return int(text) / 1000 if text else None


def parse_state(raw: bytes, job_id: str = "") -> State:
    """Parse a state string. ``CorruptJobError`` (naming ``job_id`` and the field) if it is
    malformed or a field holds a value this layout never writes."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise CorruptJobError(job_id, "state", f"is not UTF-8: {raw[:80]!r}") from None
    match = _STATE.fullmatch(text)
    if match is None:
        _fault(text, raw, job_id)
    assert match is not None  # _fault raised otherwise
    status, attempts, score, seq, token, cancel, sched, started, completed, failed, queue = (
        match.groups()
    )
    try:
        due = float(sched) if sched else None
    except ValueError:
        due = math.nan
    if due is not None and not 0 <= due < math.inf:  # also NaN
        _fault(text, raw, job_id)
    return State(
        _STATUS_OF[status],
        int(attempts),
        int(score),
        seq,
        token,
        cancel == "1",
        due,
        _ms(started),
        _ms(completed),
        _ms(failed),
        queue,
    )


def format_state(state: State) -> bytes:
    """The state string of ``state``, as the scripts write it (``pack_state``); ``sched`` as the
    shortest text of its seconds (the scripts write a due time they compute as ``%.3f``)."""
    return "|".join(f.text(getattr(state, f.name)) for f in STATE_FIELDS).encode()


def _fault(text: str, raw: bytes, job_id: str) -> None:
    """Raise the ``CorruptJobError`` naming the first bad field of a state ``_STATE`` refused."""
    parts = text.split("|", len(STATE_FIELDS) - 1)
    if len(parts) != len(STATE_FIELDS):
        raise CorruptJobError(
            job_id, "state", f"does not have {len(STATE_FIELDS)} fields: {raw[:80]!r}"
        )
    for (field, check), value in zip(_CHECKS, parts, strict=True):
        if not check.fullmatch(value) or (field == "sched" and value and not _is_seconds(value)):
            raise CorruptJobError(job_id, field, f"holds {value[:80]!r}")
    raise CorruptJobError(job_id, "state", f"is malformed: {raw[:80]!r}")  # pragma: no cover


def _is_seconds(text: str) -> bool:
    try:
        seconds = float(text)
    except ValueError:
        return False
    return math.isfinite(seconds) and seconds >= 0


def split_record(raw: bytes, job_id: str = "") -> tuple[bytes, bytes]:
    """``(state, spec)`` of a live record (see the module docstring); ``CorruptJobError`` if it
    is not one."""
    head, sep, rest = raw.partition(b":")
    if not sep or not head.isdigit() or len(head) > 9 or int(head) > len(rest):
        raise CorruptJobError(job_id, "record", f"has no state length prefix: {raw[:80]!r}")
    n = int(head)
    return rest[:n], rest[n:]


def join_record(state: bytes, spec: bytes) -> bytes:
    """A live record from its state string and spec."""
    return b"%d:%s%s" % (len(state), state, spec)


def split_token(token: str) -> tuple[str, str] | None:
    """``(random part, queue)`` of a lease token, or None if it is not one of ours."""
    rand, sep, queue = token.partition("|")
    return (rand, queue) if sep and rand else None


class _StoredAttempt(msgspec.Struct, array_like=True, frozen=True):
    """A failed attempt as ``lua/_attempts.lua`` writes it: times in server milliseconds."""

    number: int
    started: int | None
    ended: int
    kind: OutcomeKind
    error: str | None
    error_type: str | None

    def attempt(self) -> Attempt:
        started = None if self.started is None else _time(self.started / 1000)
        ended = _time(self.ended / 1000)
        return Attempt(self.number, started, ended, self.kind, self.error, self.error_type)


_ERROR = msgspec.msgpack.Decoder(tuple[str | _StoredAttempt | None, ...])
_RESULT = msgspec.msgpack.Decoder(JobResult)
_PROGRESS = msgspec.msgpack.Decoder(Progress)
_ENCODER = msgspec.msgpack.Encoder()


def encode_error(error: str | None, error_type: str | None, traceback: str | None) -> bytes:
    """The error hash value for a failure; ``b""`` when there is no error to record."""
    return b"" if error is None else _ENCODER.encode((error, error_type, traceback))


def decode_error(
    err: bytes,
) -> tuple[str | None, str | None, str | None, tuple[Attempt, ...]]:
    """``(error, error_type, traceback, failures)`` of an error hash value: the msgpack array
    ``[error, error_type, traceback, attempt...]`` (``lua/_attempts.lua``; the three items alone
    when the job has no failed attempt, as ``encode_error`` writes and releases before attempts
    were kept wrote). ``msgspec.ValidationError`` if it is not one."""
    items = _ERROR.decode(err)
    texts = [v for v in items[:3] if not isinstance(v, _StoredAttempt)]
    if len(texts) != 3:
        raise msgspec.ValidationError(f"not [error, error_type, traceback, ...]: {err[:80]!r}")
    failures = []
    for item in items[3:]:
        if not isinstance(item, _StoredAttempt):
            raise msgspec.ValidationError(f"an attempt is not an array: {item!r}"[:120])
        failures.append(item.attempt())
    error, error_type, traceback = texts
    return error, error_type, traceback, tuple(failures)


def build_job(
    job_id: str, spec: bytes, state: bytes, err: bytes, res: bytes, prog: bytes = b""
) -> Job:
    """The ``Job`` a record describes. Raises ``SerializationError`` if ``spec`` does not decode
    (use ``placeholder_job`` for a readable stand-in) and ``CorruptJobError`` if the state, the
    error, the result or the progress is unreadable."""
    return merge_spec(decode_spec_job(spec), job_id, parse_state(state, job_id), err, res, prog)


def placeholder_job(
    job_id: str, state: bytes, err: bytes, res: bytes, why: str, prog: bytes = b""
) -> Job:
    """A stand-in for a record whose spec does not decode: no task, no arguments, ``why`` as
    the error unless the record has its own (a dead letter's decode error). ``CorruptJobError``
    if the state, error, result or progress is unreadable too."""
    parsed = parse_state(state, job_id)
    job = merge_state(stand_in(parsed.queue), job_id, parsed, err, res, prog)
    if job.error is None:
        job.error, job.error_type = why, SerializationError.__name__
    return job


def merge_state(
    spec: JobSpec, job_id: str, state: State, err: bytes, res: bytes, prog: bytes = b""
) -> Job:
    """The ``Job`` of ``spec`` where its record's state, error (``err``), result (``res``) and
    progress (``prog``) say it stands; ``CorruptJobError`` if one of those does not decode."""
    return job_of(spec, job_id, state.queue, _live(job_id, state, err, res, prog))


def merge_spec(
    spec: Job, job_id: str, state: State, err: bytes, res: bytes, prog: bytes = b""
) -> Job:
    """``merge_state`` of a spec decoded by ``decode_spec_job``: the same ``Job``, built at once
    (every reserved job is built so); ``CorruptJobError`` as ``merge_state``."""
    live = _live(job_id, state, err, res, prog)
    if spec.failures and "failures" not in live:  # a spec has no such slot: bytes past its end
        live["failures"] = ()
    return msgspec.structs.replace(spec, id=job_id, queue=state.queue, **live)


def _live(job_id: str, state: State, err: bytes, res: bytes, prog: bytes) -> dict[str, Any]:
    """The live fields of a record (``LIVE_FIELDS`` by name) from its state, error, result and
    progress; ``CorruptJobError`` if one of those does not decode."""
    sched, started, completed, failed = state.sched, state.started, state.completed, state.failed
    live: dict[str, Any] = {  # the times inline: most are None (a reserved job has one)
        "status": state.status,
        "attempts": state.attempts,
        "scheduled_at": None if sched is None else _time(sched),
        "started_at": None if started is None else _time(started),
        "completed_at": None if completed is None else _time(completed),
        "failed_at": None if failed is None else _time(failed),
    }
    if not (err or res or prog):
        return live
    try:
        if err:
            error, error_type, traceback, failures = decode_error(err)
            live["error"], live["error_type"], live["traceback"] = error, error_type, traceback
            if failures:
                live["failures"] = failures
    except msgspec.DecodeError as exc:
        raise CorruptJobError(job_id, "error", f"does not decode: {exc}") from None
    try:
        if res:
            live["result"] = _RESULT.decode(res)
    except msgspec.DecodeError as exc:
        raise CorruptJobError(job_id, "result", f"does not decode: {exc}") from None
    try:
        if prog:
            live["progress"] = _PROGRESS.decode(prog)
    except msgspec.DecodeError as exc:
        raise CorruptJobError(job_id, "progress", f"does not decode: {exc}") from None
    return live


def _time(seconds: float | None) -> Any:
    return None if seconds is None else utc_from_timestamp(min(seconds, LATEST))
