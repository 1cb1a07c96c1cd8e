"""The record codec of the Redis broker: what a live record, a state string, an error value and
a lease token look like, and the ``Job`` they describe. (Key names are in ``keys``.)

A live record is ``<n>:<state><spec>``: ``n`` the length of the state string in decimal, then the
state, then the encoded ``Job`` as enqueued (one hash field per job keeps Redis memory per queued
job low: about 260 bytes for a small job, see ``benchmarks/redis_memory.py``). The state string
is ``status|attempts|score|seq|token|cancel|sched|started|completed|failed|queue`` (queue last: it
may contain ``|``); ``score`` is minus the priority, ``seq`` the ranked-set place of a job of a
non-default priority (``-<15 digits>`` for one put back at the front) or empty; times are server
milliseconds, ``sched`` is seconds text.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from taskit.errors import CorruptJobError, SerializationError
from taskit.job import Job, JobResult, JobStatus, decode_job, utc_from_timestamp

__all__ = [
    "LATEST",
    "State",
    "build_job",
    "corrupt_job",
    "encode_error",
    "join_record",
    "merge_state",
    "parse_state",
    "placeholder_job",
    "split_record",
    "split_token",
]


#: The latest time a datetime can show (seconds); a job due later shows this, and never falls due.
LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class State:
    """A parsed state string (see the module docstring)."""

    status: JobStatus
    attempts: int
    token: str
    cancel: bool
    sched: float | None
    started: float | None
    completed: float | None
    failed: float | None
    queue: str


def _ms(text: str) -> float | None:
    return int(text) / 1000 if text else None


_STATUSES = frozenset(status.value for status in JobStatus)
# The values the layout writes, checked as the scripts check them (state_fault in _common.lua):
# whatever a script accepts, this accepts, so a leased job's state always parses.
_COUNT = re.compile(r"\d{1,9}")
_SIGNED = re.compile(r"-?\d{1,21}")
_TIME = re.compile(r"\d{1,20}")
_SECONDS = re.compile(r"[0-9.eE+-]{1,40}")


#: A whole well-formed state string at once (the common case: one match, no per-field work).
_STATE = re.compile(
    "(" + "|".join(sorted(_STATUSES)) + ")"
    r"\|(\d{1,9})\|-?\d{1,21}\|(?:-?\d{1,21})?\|([^|]*)\|(1?)\|([0-9.eE+-]{0,40})"
    r"\|(\d{0,20})\|(\d{0,20})\|(\d{0,20})\|(.*)",
    re.DOTALL,
)


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
    status, attempts, token, cancel, sched, started, completed, failed, queue = match.groups()
    try:
        due = float(sched) if sched else None
    except ValueError:
        due = math.nan
    if due is not None and not 0 <= due < math.inf:  # also NaN
        _fault(text, raw, job_id)
    return State(
        status=JobStatus(status),
        attempts=int(attempts),
        token=token,
        cancel=cancel == "1",
        sched=due,
        started=_ms(started),
        completed=_ms(completed),
        failed=_ms(failed),
        queue=queue,
    )


def _fault(text: str, raw: bytes, job_id: str) -> None:
    """Raise the ``CorruptJobError`` naming the first bad field of a state ``_STATE`` refused."""
    parts = text.split("|", 10)
    if len(parts) != 11:
        raise CorruptJobError(job_id, "state", f"does not have 11 fields: {raw[:80]!r}")
    status, attempts, score, seq, _token, cancel, sched, started, completed, failed, _ = parts
    checks = (
        ("status", status, status in _STATUSES),
        ("attempts", attempts, _COUNT.fullmatch(attempts)),
        ("score", score, _SIGNED.fullmatch(score)),
        ("seq", seq, not seq or _SIGNED.fullmatch(seq)),
        ("cancel", cancel, cancel in ("", "1")),
        ("sched", sched, not sched or _is_seconds(sched)),
        ("started", started, not started or _TIME.fullmatch(started)),
        ("completed", completed, not completed or _TIME.fullmatch(completed)),
        ("failed", failed, not failed or _TIME.fullmatch(failed)),
    )
    for field, value, ok in checks:
        if not ok:
            raise CorruptJobError(job_id, field, f"holds {value[:80]!r}")
    raise CorruptJobError(job_id, "state", f"is malformed: {raw[:80]!r}")  # pragma: no cover


def _is_seconds(text: str) -> bool:
    if not _SECONDS.fullmatch(text):
        return False
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


_ERROR = msgspec.msgpack.Decoder(tuple[str | None, str | None, str | None])
_RESULT = msgspec.msgpack.Decoder(JobResult)
_ENCODER = msgspec.msgpack.Encoder()
_EMPTY_PAYLOAD = msgspec.Raw(b"\x92\x90\x80")  # msgpack of [[], {}]


def encode_error(error: str | None, error_type: str | None, traceback: str | None) -> bytes:
    """The error hash value for a failure; ``b""`` when there is no error to record."""
    return b"" if error is None else _ENCODER.encode((error, error_type, traceback))


def build_job(job_id: str, spec: bytes, state: bytes, err: bytes, res: bytes) -> Job:
    """The ``Job`` a record describes. Raises ``SerializationError`` if ``spec`` does not decode
    (use ``placeholder_job`` for a readable stand-in) and ``CorruptJobError`` if the state, the
    error or the result is unreadable."""
    return merge_state(decode_job(spec), job_id, parse_state(state, job_id), err, res)


def placeholder_job(job_id: str, state: bytes, err: bytes, res: bytes, why: str) -> Job:
    """A stand-in for a record whose spec does not decode: no task, no arguments, ``why`` as
    the error unless the record has its own (a dead letter's decode error). ``CorruptJobError``
    if the state, error or result is unreadable too."""
    parsed = parse_state(state, job_id)
    job = _stand_in(job_id, parsed.queue, why)
    return merge_state(job, job_id, parsed, err, res)


def corrupt_job(job_id: str, queue: str, why: str) -> Job:
    """A stand-in for a dead letter of ``queue`` whose record cannot be read at all: status
    DEAD_LETTER, no task, no arguments, ``why`` as the error (so a listing can show it)."""
    return msgspec.structs.replace(
        _stand_in(job_id, queue, why), status=JobStatus.DEAD_LETTER, error_type="CorruptJobError"
    )


def _stand_in(job_id: str, queue: str, why: str) -> Job:
    return Job(
        id=job_id,
        task="",
        queue=queue,
        payload=_EMPTY_PAYLOAD,
        created_at=utc_from_timestamp(0),
        error=why,
        error_type=SerializationError.__name__,
    )


def merge_state(job: Job, job_id: str, state: State, err: bytes, res: bytes) -> Job:
    """``job`` (decoded from its spec) with the live fields of its record applied;
    ``CorruptJobError`` if ``err`` or ``res`` does not decode."""
    changes: dict[str, Any] = {
        "id": job_id,
        "queue": state.queue,
        "status": state.status,
        "attempts": state.attempts,
        "scheduled_at": _time(state.sched),
        "started_at": _time(state.started),
        "completed_at": _time(state.completed),
        "failed_at": _time(state.failed),
    }
    try:
        if err:
            changes["error"], changes["error_type"], changes["traceback"] = _ERROR.decode(err)
    except msgspec.DecodeError as exc:
        raise CorruptJobError(job_id, "error", f"does not decode: {exc}") from None
    try:
        if res:
            changes["result"] = _RESULT.decode(res)
    except msgspec.DecodeError as exc:
        raise CorruptJobError(job_id, "result", f"does not decode: {exc}") from None
    return msgspec.structs.replace(job, **changes)


def _time(seconds: float | None) -> Any:
    return None if seconds is None else utc_from_timestamp(min(seconds, LATEST))
