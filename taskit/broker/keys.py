"""The Redis layout of the Redis broker: every key name, and the format of what they hold.

All keys of one broker share the hash tag ``{<prefix>}`` (default ``{taskit}``), so every key of a
queue, and every key any one script touches, lives in one Cluster slot. (Per-queue tags cannot
work with this contract: ``get``, ``cancel`` and unique ids are by job id alone, a batch enqueue
spans queues all-or-none, and a multi-queue blocking reserve waits on several queues at once.)
Scale a Cluster out by giving apps different prefixes.

==========================  ======  ===================================================
key                         type    holds
==========================  ======  ===================================================
``{p}:jobs``                hash    live job id -> its record: state and spec (below)
``{p}:err``                 hash    live job id -> msgpack ``[error, type, traceback]``
``{p}:seq``                 string  sequence counter (ranked-set order, dead letters)
``{p}:queues``              set     every queue name ever enqueued to
``{p}:done:<id>``           hash    a finished job: spec, state, err, res; has a TTL
``{p}:q:<queue>:fifo``      list    ready ids of the default priority (0), oldest first
``{p}:q:<queue>:ranked``    zset    ready ``<seq>:<id>`` of other priorities, scored
                                    ``-priority``
``{p}:q:<queue>:delayed``   zset    scheduled / retrying id scored by due time (ms)
``{p}:q:<queue>:leases``    zset    running id scored by lease deadline (ms)
``{p}:q:<queue>:dead``      zset    dead-lettered id scored by ``seq`` (oldest first)
``{p}:q:<queue>:totals``    hash    ``completed`` / ``failed`` counters
``{p}:q:<queue>:wake``      list    wake-up tokens (at most 16) for blocked reserves
``{p}:claim:<key>``         string  a ``Broker.claim``, held until it expires (PX)
``{p}:workers``             zset    heartbeat names scored by expiry (ms)
``{p}:beats``               hash    heartbeat name -> its record
``{p}:epoch``               string  random id of this data set: gone or changed = data lost
==========================  ======  ===================================================

Live jobs (waiting, running, dead letters) are fields of the fixed hashes and never carry a TTL;
finishing moves a job to its own ``done`` key, which expires after the result TTL. Because every
fixed hash and every queue key is named before a script runs, and a done key is only touched by a
script that was given the job id, every script gets every key it touches in KEYS.

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
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import msgspec

from taskit.errors import ConfigurationError, CorruptJobError, SerializationError
from taskit.job import (
    Job,
    JobResult,
    JobSpec,
    JobStatus,
    decode_spec,
    job_of,
    utc_from_timestamp,
)

__all__ = [
    "LATEST",
    "STATE_FIELDS",
    "Keys",
    "State",
    "StateField",
    "build_job",
    "corrupt_job",
    "encode_error",
    "format_state",
    "join_record",
    "merge_state",
    "parse_state",
    "placeholder_job",
    "split_record",
    "split_token",
]


#: The latest time a datetime can show (seconds); a job due later shows this, and never falls due.
LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


class Keys:
    """Key names for one prefix. Queue keys are ``{prefix}:q:<queue>:<kind>``; queue names may
    hold any character (the last ``:`` part is always one of the fixed kinds)."""

    def __init__(self, prefix: str) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"Redis key prefix must be non-empty, without braces: {prefix!r}"
            )
        self.prefix = prefix
        self.tag = "{" + prefix + "}"
        self.jobs = f"{self.tag}:jobs"
        self.err = f"{self.tag}:err"
        self.seq = f"{self.tag}:seq"
        self.queues = f"{self.tag}:queues"
        self.workers = f"{self.tag}:workers"
        self.beats = f"{self.tag}:beats"
        self.epoch = f"{self.tag}:epoch"
        #: Keys that only an older layout writes (its live-job hashes): found, they hold jobs
        #: this version cannot see.
        self.legacy = (f"{self.tag}:state", f"{self.tag}:spec")

    def done(self, job_id: str) -> str:
        return f"{self.tag}:done:{job_id}"

    def claim(self, key: str) -> str:
        return f"{self.tag}:claim:{key}"

    def queue(self, queue: str, kind: str) -> str:
        """Key ``kind`` (fifo, ranked, delayed, leases, dead, totals, wake) of ``queue``."""
        return f"{self.tag}:q:{queue}:{kind}"

    def fifo(self, queue: str) -> str:
        return self.queue(queue, "fifo")

    def ranked(self, queue: str) -> str:
        return self.queue(queue, "ranked")

    def delayed(self, queue: str) -> str:
        return self.queue(queue, "delayed")

    def leases(self, queue: str) -> str:
        return self.queue(queue, "leases")

    def dead(self, queue: str) -> str:
        return self.queue(queue, "dead")

    def totals(self, queue: str) -> str:
        return self.queue(queue, "totals")

    def wake(self, queue: str) -> str:
        return self.queue(queue, "wake")

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix."""
        return f"{self.tag}*"

    def kind_of(self, key: str) -> str | None:
        """The Redis type (as ``TYPE`` names it) this layout keeps at ``key``; None for a key
        that is not this prefix's."""
        fixed = {self.jobs: "hash", self.err: "hash", self.beats: "hash", self.seq: "string",
                 self.epoch: "string", self.queues: "set", self.workers: "zset"}  # fmt: skip
        if key in fixed:
            return fixed[key]
        for part, kind in ((":done:", "hash"), (":claim:", "string"), (":q:", None)):
            if key.startswith(self.tag + part):
                return kind or _QUEUE_KINDS.get(key.rpartition(":")[2])
        return None


#: The Redis type of each queue key, by its last part (see ``Keys.queue``).
_QUEUE_KINDS = {"fifo": "list", "wake": "list", "ranked": "zset", "delayed": "zset",
                "leases": "zset", "dead": "zset", "totals": "hash"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class State:
    """A parsed state string: its fields in ``STATE_FIELDS`` order; times in seconds."""

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
if tuple(f.name for f in STATE_FIELDS) != tuple(f.name for f in fields(State)):
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
        JobStatus(status),
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
    return merge_state(decode_spec(spec), job_id, parse_state(state, job_id), err, res)


def placeholder_job(job_id: str, state: bytes, err: bytes, res: bytes, why: str) -> Job:
    """A stand-in for a record whose spec does not decode: no task, no arguments, ``why`` as
    the error unless the record has its own (a dead letter's decode error). ``CorruptJobError``
    if the state, error or result is unreadable too."""
    parsed = parse_state(state, job_id)
    job = merge_state(_stand_in(parsed.queue), job_id, parsed, err, res)
    if not err:
        job.error, job.error_type = why, SerializationError.__name__
    return job


def corrupt_job(job_id: str, queue: str, why: str) -> Job:
    """A stand-in for a dead letter of ``queue`` whose record cannot be read at all: status
    DEAD_LETTER, no task, no arguments, ``why`` as the error (so a listing can show it)."""
    live = {"status": JobStatus.DEAD_LETTER, "error": why, "error_type": "CorruptJobError"}
    return job_of(_stand_in(queue), job_id, queue, live)


def _stand_in(queue: str) -> JobSpec:
    return JobSpec(task="", queue=queue, payload=_EMPTY_PAYLOAD, created_at=utc_from_timestamp(0))


def merge_state(spec: JobSpec, job_id: str, state: State, err: bytes, res: bytes) -> Job:
    """The ``Job`` of ``spec`` where its record's state, error (``err``) and result (``res``)
    say it stands; ``CorruptJobError`` if ``err`` or ``res`` does not decode."""
    live: dict[str, Any] = {
        "status": state.status,
        "attempts": state.attempts,
        "scheduled_at": _time(state.sched),
        "started_at": _time(state.started),
        "completed_at": _time(state.completed),
        "failed_at": _time(state.failed),
    }
    try:
        if err:
            live["error"], live["error_type"], live["traceback"] = _ERROR.decode(err)
    except msgspec.DecodeError as exc:
        raise CorruptJobError(job_id, "error", f"does not decode: {exc}") from None
    try:
        if res:
            live["result"] = _RESULT.decode(res)
    except msgspec.DecodeError as exc:
        raise CorruptJobError(job_id, "result", f"does not decode: {exc}") from None
    return job_of(spec, job_id, state.queue, live)


def _time(seconds: float | None) -> Any:
    return None if seconds is None else utc_from_timestamp(min(seconds, LATEST))
