"""The exact bytes taskit stores and sends, pinned: a spec, a record, a job, a result, an outcome,
an error value (with a job's failed attempts) and the Redis state string.

Producers and workers of two releases share one Redis during a rolling deploy, and with
``array_like`` a field's position is its schema: a reordered or retyped field would be misread,
not refused. So every format is pinned here byte for byte (hex, one line per field), both ways:
what the code writes must be these bytes, and these bytes must read back as these values. Change
a pin only together with ``SCHEMA_VERSION`` (or for a new optional field at the end).

The state string is written by the Lua scripts and read by Python (``parse_state``); the Redis
tests below drive each script that writes one and prove Python reads back every field of it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskit.broker.redis import records
from taskit.broker.redis.records import (
    STATE_FIELDS,
    State,
    build_job,
    decode_error,
    encode_error,
    format_state,
    join_record,
    parse_state,
    split_record,
)
from taskit.dedup import Dedup
from taskit.dependencies import After, Feed, IfFailed
from taskit.errors import CorruptJobError
from taskit.job import (
    LIVE_FIELDS,
    Attempt,
    Job,
    JobResult,
    JobSpec,
    JobStatus,
    Outcome,
    OutcomeKind,
    Progress,
    decode_job,
    decode_spec,
    decode_spec_job,
    encode_arguments,
    encode_job,
    encode_spec,
    stored_form,
)
from tests.broker._redis_kinds import REAL, RedisHarness, open_redis_harness

CREATED = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)

# -- the pins --------------------------------------------------------------------------------------
#: ``stored_form(minimal_job())[1]``: the spec of a job with only its required fields given.
MINIMAL_SPEC = bytes.fromhex(
    "dc001d"  # an array of 29: the tag, then the 28 fields in order, defaults included
    "02"  # v: SCHEMA_VERSION
    "a0"  # id: '' (the record's key holds it)
    "a974657374732e616464"  # task: 'tests.add'
    "a764656661756c74"  # queue: 'default'
    "9292010280"  # payload: [[1, 2], {}]
    "d6ff663235c8"  # created_at: 2024-05-01 12:30 UTC (timestamp 32)
    "00"  # priority: 0
    "a770656e64696e67"  # status: 'pending' (a live slot: always fresh)
    "00"  # attempts: 0 (a live slot)
    "03"  # max_retries: 3
    "c0"  # timeout: None
    "c0"  # scheduled_at: None (a live slot, as are the next seven)
    "c0"  # started_at: None
    "c0"  # completed_at: None
    "c0"  # failed_at: None
    "c0"  # error: None
    "c0"  # error_type: None
    "c0"  # traceback: None
    "c0"  # result: None
    "80"  # metadata: {}
    "c0"  # created_by: None
    "c0"  # expires_at: None
    "c0"  # result_ttl: None
    "c0"  # progress: None (a live slot)
    "90"  # limits: ()
    "c0"  # group: None
    "c0"  # dedup: None
    "c0"  # workflow: None
    "c0"  # after: None
)
#: ``stored_form(full_job())[1]``: every spec field set; the live fields set on the job are reset.
FULL_SPEC = bytes.fromhex(
    "dc001d"  # an array of 29
    "02"  # v: SCHEMA_VERSION
    "a0"  # id: ''
    "ac74657374732e7265706f7274"  # task: 'tests.report'
    "a77265706f727473"  # queue: 'reports'
    "929201a374776f81a4666c6167c3"  # payload: [[1, 'two'], {'flag': True}]
    "d7ff000f4240663235c8"  # created_at: 2024-05-01 12:30:00.000250 UTC (timestamp 64)
    "07"  # priority: 7
    "a770656e64696e67"  # status: 'pending'
    "00"  # attempts: 0
    "05"  # max_retries: 5
    "cb4029000000000000"  # timeout: 12.5
    "c0c0c0c0c0c0c0c0"  # scheduled_at .. result: None (eight live slots)
    "81a57472616365a3616263"  # metadata: {'trace': 'abc'}
    "a57465737473"  # created_by: 'tests'
    "d6ff663243d8"  # expires_at: 13:30:00
    "cb4056800000000000"  # result_ttl: 90.0
    "c0"  # progress: None
    "91aa6578706f7274733a6331"  # limits: ('exports:c1',)
    "a27431"  # group: 't1'
    "93a86465626f756e6365"  # dedup: ['debounce',
    "af74657374732e7265706f7274006331"  # 'tests.report\0c1',
    "cb4014000000000000"  # 5.0]
    "a477662d31"  # workflow: 'wf-1'
    "9391a56a6f622d31"  # after: [('job-1',),
    "a36f6e65a8636f6e74696e7565"  # 'one', 'continue']
)
#: ``result_ttl`` (90.0) in ``FULL_SPEC`` and ``FULL_JOB``, the position before ``progress``.
RESULT_TTL = bytes.fromhex("cb4056800000000000")
#: ``encode_job(full_job())``: the read model's own encoding (the memory broker's stored form).
FULL_JOB = bytes.fromhex(
    "dc001e"  # an array of 30: the spec's 29, then failures (a live field with no spec slot)
    "02"  # v: SCHEMA_VERSION
    "a56a6f622d32"  # id: 'job-2'
    "ac74657374732e7265706f7274"  # task: 'tests.report'
    "a77265706f727473"  # queue: 'reports'
    "929201a374776f81a4666c6167c3"  # payload: [[1, 'two'], {'flag': True}]
    "d7ff000f4240663235c8"  # created_at: 2024-05-01 12:30:00.000250 UTC
    "07"  # priority: 7
    "a87265747279696e67"  # status: 'retrying'
    "02"  # attempts: 2
    "05"  # max_retries: 5
    "cb4029000000000000"  # timeout: 12.5
    "d6ff663236f4"  # scheduled_at: 12:35:00
    "d6ff663235c9"  # started_at: 12:30:01
    "d6ff663235ca"  # completed_at: 12:30:02
    "d6ff663235cb"  # failed_at: 12:30:03
    "a4626f6f6d"  # error: 'boom'
    "ac52756e74696d654572726f72"  # error_type: 'RuntimeError'
    "ad54726163656261636b202e2e2e"  # traceback: 'Traceback ...'
    "85"  # result: a JobResult, a map of its five fields that are not default:
    "a773756363657373c2"  # success: False
    "a576616c7565920102"  # value: [1, 2]
    "a56572726f72a4626f6f6d"  # error: 'boom'
    "aa6572726f725f74797065a158"  # error_type: 'X'
    "a86475726174696f6ecb3fd0000000000000"  # duration: 0.25
    "81a57472616365a3616263"  # metadata: {'trace': 'abc'}
    "a57465737473"  # created_by: 'tests'
    "d6ff663243d8"  # expires_at: 13:30:00
    "cb4056800000000000"  # result_ttl: 90.0
    "84"  # progress: a Progress, a map of its four fields that are not default:
    "aa757064617465645f6174d6ff663235cc"  # updated_at: 12:30:04
    "a86672616374696f6ecb3fe0000000000000"  # fraction: 0.5
    "a76d657373616765a468616c66"  # message: 'half'
    "a46461746181a16e03"  # data: {'n': 3}
    "91aa6578706f7274733a6331"  # limits: ('exports:c1',)
    "a27431"  # group: 't1'
    "93a86465626f756e6365"  # dedup: ['debounce',
    "af74657374732e7265706f7274006331"  # 'tests.report\0c1',
    "cb4014000000000000"  # 5.0]
    "a477662d31"  # workflow: 'wf-1'
    "9391a56a6f622d31"  # after: [('job-1',),
    "a36f6e65a8636f6e74696e7565"  # 'one', 'continue']
    "92"  # failures: two Attempts, each an array of its six fields:
    "9601c0d6ff663235c8"  # [1, None, 12:30:00,
    "a57265747279a56669727374aa56616c75654572726f72"  # 'retry', 'first', 'ValueError']
    "9602d6ff663235c9d6ff663235cb"  # [2, 12:30:01, 12:30:03,
    "a57265747279a4626f6f6dac52756e74696d654572726f72"  # 'retry', 'boom', 'RuntimeError']
)
#: ``failures`` in ``FULL_JOB``: its last position.
FAILURES = FULL_JOB[FULL_JOB.rindex(bytes.fromhex("929601")) :]
#: A ``JobResult`` with every field set (a map: defaults left out, as for ``Outcome``).
RESULT = bytes.fromhex(
    "86"  # a map of 6
    "a773756363657373c2"  # success: False
    "a576616c7565920102"  # value: [1, 2]
    "a56572726f72a4626f6f6d"  # error: 'boom'
    "aa6572726f725f74797065a158"  # error_type: 'X'
    "a86475726174696f6ecb3fd0000000000000"  # duration: 0.25
    "a974726163656261636ba27462"  # traceback: 'tb'
)
#: An ``Outcome`` with every field set.
OUTCOME = bytes.fromhex(
    "89"  # a map of 9
    "a66a6f625f6964a56a6f622d32"  # job_id: 'job-2'
    "a5746f6b656ea56162637c71"  # token: 'abc|q'
    "a46b696e64a57265747279"  # kind: 'retry'
    "a6726573756c7482a773756363657373c3a576616c756503"  # result: {success: True, value: 3}
    "a56572726f72a4626f6f6d"  # error: 'boom'
    "aa6572726f725f74797065aa56616c75654572726f72"  # error_type: 'ValueError'
    "a974726163656261636ba27462"  # traceback: 'tb'
    "a564656c6179cb3ff8000000000000"  # delay: 1.5
    "aa726573756c745f74746ccb4056800000000000"  # result_ttl: 90.0
)
#: ``encode_error("boom", "ValueError", None)``: a value of the error hash.
ERROR = bytes.fromhex("93a4626f6f6daa56616c75654572726f72c0")
#: The error hash value of ``full_job()`` on Redis: its error, then its failed attempts, which
#: ``lua/_attempts.lua`` appends (times as integer server milliseconds).
FAILED_ERROR = bytes.fromhex(
    "95"  # an array of 5: error, error_type, traceback, then one item per attempt
    "a4626f6f6d"  # error: 'boom'
    "ac52756e74696d654572726f72"  # error_type: 'RuntimeError'
    "ad54726163656261636b202e2e2e"  # traceback: 'Traceback ...'
    "9601c0cf0000018f34221540"  # [1, None, 1714566600000 (12:30:00),
    "a57265747279a56669727374aa56616c75654572726f72"  # 'retry', 'first', 'ValueError']
    "9602cf0000018f34221928cf0000018f342220f8"  # [2, 12:30:01, 12:30:03 (ms),
    "a57265747279a4626f6f6dac52756e74696d654572726f72"  # 'retry', 'boom', 'RuntimeError']
)
#: The state string of a job just enqueued to ``default`` (the Lua scripts write it).
ENQUEUED_STATE = b"pending|0|0||||||||default"


def minimal_job() -> Job:
    return Job(
        id="job-1",
        task="tests.add",
        queue="default",
        payload=encode_arguments((1, 2), {}),
        created_at=CREATED,
    )


def full_job() -> Job:
    return Job(
        id="job-2",
        task="tests.report",
        queue="reports",
        payload=encode_arguments([1, "two"], {"flag": True}),
        created_at=CREATED + timedelta(microseconds=250),
        priority=7,
        status=JobStatus.RETRYING,
        attempts=2,
        max_retries=5,
        timeout=12.5,
        scheduled_at=CREATED + timedelta(minutes=5),
        started_at=CREATED + timedelta(seconds=1),
        completed_at=CREATED + timedelta(seconds=2),
        failed_at=CREATED + timedelta(seconds=3),
        error="boom",
        error_type="RuntimeError",
        traceback="Traceback ...",
        result=JobResult(success=False, value=[1, 2], error="boom", error_type="X", duration=0.25),
        metadata={"trace": "abc"},
        created_by="tests",
        expires_at=CREATED + timedelta(hours=1),
        result_ttl=90.0,
        progress=Progress(
            updated_at=CREATED + timedelta(seconds=4), fraction=0.5, message="half", data={"n": 3}
        ),
        limits=("exports:c1",),
        group="t1",
        dedup=Dedup("debounce", "tests.report\0c1", 5.0),
        workflow="wf-1",
        after=After(("job-1",), Feed.ONE, IfFailed.CONTINUE),
        failures=(
            Attempt(1, None, CREATED, OutcomeKind.RETRY, "first", "ValueError"),
            Attempt(
                2,
                CREATED + timedelta(seconds=1),
                CREATED + timedelta(seconds=3),
                OutcomeKind.RETRY,
                "boom",
                "RuntimeError",
            ),
        ),
    )


def same(read: msgspec.Struct, expected: msgspec.Struct) -> bool:
    """Whether ``read`` equals ``expected`` with every field of the same type (so a field
    retyped ``int`` -> ``float`` shows, though ``7 == 7.0``)."""
    fields = expected.__struct_fields__
    types = [type(getattr(read, f)) for f in fields] == [type(getattr(expected, f)) for f in fields]
    return read == expected and types


def spec_of(job: Job) -> JobSpec:
    """What ``job`` is, as its spec holds it (an empty id; every live slot fresh)."""
    fields = {f: getattr(job, f) for f in JobSpec.__struct_fields__ if f not in LIVE_FIELDS}
    return JobSpec(**(fields | {"id": ""}))


# -- spec, job, result, outcome, error: written as pinned, and read back ---------------------------
@pytest.mark.parametrize(
    ("job", "pinned"), [(minimal_job(), MINIMAL_SPEC), (full_job(), FULL_SPEC)], ids=["min", "full"]
)
def test_a_spec_is_stored_as_these_bytes_and_reads_back_field_by_field(
    job: Job, pinned: bytes
) -> None:
    assert stored_form(job)[1] == pinned
    assert same(decode_spec(pinned), spec_of(job))
    assert encode_spec(spec_of(job)) == pinned


def test_a_spec_is_the_job_wire_format_released_versions_read() -> None:
    """A release before JobSpec wrote, and reads, a spec as the encoded fresh ``Job``: the
    fresh ``Job`` is the spec's bytes, then ``failures`` (empty), which ``Job`` alone has."""
    fresh = msgspec.structs.replace(full_job(), id="", **LIVE_FIELDS)

    assert encode_job(fresh) == b"\xdc\x00\x1e" + FULL_SPEC[3:] + b"\x90"
    assert same(decode_job(FULL_SPEC), fresh)
    assert same(decode_spec(encode_job(fresh)), spec_of(full_job()))  # the extra item ignored


def test_bytes_written_before_result_ttl_still_decode_with_the_default() -> None:
    """A spec or job of a release before ``result_ttl`` has one position fewer (22, so no
    ``progress`` either): it reads back with ``result_ttl`` None (the broker's default), every
    other field as written."""
    spec_before = b"\xdc\x00\x16" + FULL_SPEC[3 : FULL_SPEC.rindex(RESULT_TTL)]
    job_before = b"\xdc\x00\x16" + FULL_JOB[3 : FULL_JOB.rindex(RESULT_TTL)]

    assert same(
        decode_spec(spec_before),
        msgspec.structs.replace(
            spec_of(full_job()),
            result_ttl=None,
            limits=(),
            group=None,
            dedup=None,
            workflow=None,
            after=None,
        ),
    )
    assert same(
        decode_job(job_before),
        msgspec.structs.replace(
            full_job(),
            result_ttl=None,
            progress=None,
            limits=(),
            group=None,
            dedup=None,
            workflow=None,
            after=None,
            failures=(),
        ),
    )


#: ``workflow`` and ``after`` in ``FULL_SPEC`` and ``FULL_JOB``: their last two positions.
WORKFLOW = bytes.fromhex("a477662d319391a56a6f622d31a36f6e65a8636f6e74696e7565")


def test_bytes_written_before_workflows_still_decode_without_them() -> None:
    """A spec or job of a release before workflows ends at ``dedup`` (27 positions): it reads
    back with ``workflow`` and ``after`` None, every other field as written."""
    spec_before = b"\xdc\x00\x1b" + FULL_SPEC[3 : FULL_SPEC.rindex(WORKFLOW)]
    job_before = b"\xdc\x00\x1b" + FULL_JOB[3 : FULL_JOB.rindex(WORKFLOW)]
    plain = {"workflow": None, "after": None}

    assert same(decode_spec(spec_before), msgspec.structs.replace(spec_of(full_job()), **plain))
    assert same(decode_job(job_before), msgspec.structs.replace(full_job(), **plain, failures=()))


#: ``dedup`` in ``FULL_SPEC`` and ``FULL_JOB``, just before ``workflow``.
DEDUP = bytes.fromhex("93a86465626f756e6365af74657374732e7265706f7274006331cb4014000000000000")


def test_bytes_written_before_dedup_still_decode_without_one() -> None:
    """A spec or job of a release before ``dedup`` ends at ``group`` (26 positions): it reads
    back with ``dedup`` None, every other field as written."""
    spec_before = b"\xdc\x00\x1a" + FULL_SPEC[3 : FULL_SPEC.rindex(DEDUP)]
    job_before = b"\xdc\x00\x1a" + FULL_JOB[3 : FULL_JOB.rindex(DEDUP)]
    plain = {"dedup": None, "workflow": None, "after": None}

    assert same(decode_spec(spec_before), msgspec.structs.replace(spec_of(full_job()), **plain))
    assert same(decode_job(job_before), msgspec.structs.replace(full_job(), **plain, failures=()))


def test_a_job_written_before_failures_still_decodes_without_them() -> None:
    """A job of a release before ``failures`` ends at ``after`` (29 positions, the spec's):
    it reads back with no failures, every other field as written."""
    job_before = b"\xdc\x00\x1d" + FULL_JOB[3 : FULL_JOB.rindex(FAILURES)]

    assert same(decode_job(job_before), msgspec.structs.replace(full_job(), failures=()))


def test_a_job_is_encoded_as_these_bytes_and_reads_back() -> None:
    assert encode_job(full_job()) == FULL_JOB
    assert same(decode_job(FULL_JOB), full_job())


def test_a_result_an_outcome_and_an_error_value_are_these_bytes() -> None:
    result = JobResult(
        success=False, value=[1, 2], error="boom", error_type="X", duration=0.25, traceback="tb"
    )
    outcome = Outcome(
        job_id="job-2",
        token="abc|q",
        kind=OutcomeKind.RETRY,
        result=JobResult(success=True, value=3),
        error="boom",
        error_type="ValueError",
        traceback="tb",
        delay=1.5,
        result_ttl=90.0,
    )

    assert msgspec.msgpack.encode(result) == RESULT
    assert same(msgspec.msgpack.decode(RESULT, type=JobResult), result)
    assert msgspec.msgpack.encode(outcome) == OUTCOME
    assert same(msgspec.msgpack.decode(OUTCOME, type=Outcome), outcome)
    assert encode_error("boom", "ValueError", None) == ERROR


def test_an_error_value_with_failed_attempts_reads_back_as_the_jobs_error_and_failures() -> None:
    job = full_job()

    assert decode_error(FAILED_ERROR) == (job.error, job.error_type, job.traceback, job.failures)
    assert decode_error(ERROR) == ("boom", "ValueError", None, ())  # three items: no attempts
    assert msgspec.msgpack.encode(job.failures) == FAILURES


@pytest.mark.parametrize(
    "raw",
    [
        msgspec.msgpack.encode(["boom", "X"]),  # too short
        msgspec.msgpack.encode(["boom", "X", None, "not an attempt"]),
        msgspec.msgpack.encode([[1, None, 1, "retry", None, None], "X", None]),  # an attempt first
        msgspec.msgpack.encode(["boom", "X", None, [1, None, 1, "nope", None, None]]),
    ],
)
def test_an_error_value_of_another_shape_is_corrupt(raw: bytes) -> None:
    state = b"failed|1|0||=t:fail||5|1000|2000|3000|q"

    with pytest.raises(CorruptJobError, match="error"):
        build_job("j", MINIMAL_SPEC, state, raw, b"")


@given(
    task=st.text(max_size=20),
    queue=st.text(min_size=1, max_size=20),
    args=st.lists(st.integers(-(2**63), 2**63) | st.text(max_size=5), max_size=3),
    priority=st.integers(-(2**31), 2**31),
    max_retries=st.integers(0, 100),
    timeout=st.none() | st.floats(0, 1e6),
    metadata=st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63), max_size=3),
    created_by=st.none() | st.text(max_size=10),
    expires_at=st.none() | st.just(CREATED + timedelta(seconds=30)),
    result_ttl=st.none() | st.floats(0, 1e6),
    attempts=st.integers(0, 5),
)
def test_any_spec_is_the_fresh_job_without_its_id(**fields: Any) -> None:
    args, attempts = fields.pop("args"), fields.pop("attempts")
    job = Job(
        id="x",
        payload=encode_arguments(args, {}),
        created_at=CREATED,
        attempts=attempts,
        **fields,
    )

    stored, spec = stored_form(job)

    fresh = encode_job(msgspec.structs.replace(job, id="", **LIVE_FIELDS))
    assert spec == b"\xdc\x00\x1d" + fresh[3:-1]  # less failures (empty), which it has no slot of
    assert stored == msgspec.structs.replace(job, **LIVE_FIELDS)


def test_a_spec_never_says_where_a_job_stands() -> None:
    for name in (f for f in LIVE_FIELDS if f in JobSpec.__struct_fields__):
        stale = msgspec.structs.replace(spec_of(full_job()), **{name: getattr(full_job(), name)})
        with pytest.raises(ValueError, match="live slots"):
            encode_spec(stale)


# -- a record: state and spec read back as one Job ----------------------------------------------
def test_a_record_reads_back_as_the_job_it_stored() -> None:
    state = b"running|2|-7||tok|1|1714566900.5|1714566601000|1714566602000|1714566603000|reports"
    result = msgspec.msgpack.encode(full_job().result)

    progress = msgspec.msgpack.encode(full_job().progress)
    job = build_job("job-2", FULL_SPEC, state, FAILED_ERROR, result, progress)

    expected = msgspec.structs.replace(
        full_job(),
        status=JobStatus.RUNNING,
        scheduled_at=datetime.fromtimestamp(1714566900.5, UTC),
    )
    assert job == expected


def test_every_live_field_comes_from_the_record_not_the_spec() -> None:
    """A live field added to LIVE_FIELDS must be carried by the broker's state: a record with
    every part set shows each of them away from its fresh value."""
    state = b"failed|1|0||=t:fail||5|1000|2000|3000|q"
    progress = msgspec.msgpack.encode(full_job().progress)
    job = build_job("j", MINIMAL_SPEC, state, FAILED_ERROR, RESULT, progress)

    assert [f for f, fresh in LIVE_FIELDS.items() if getattr(job, f) == fresh] == []


def test_a_spec_with_stale_live_slots_reads_as_it_did_before_jobspec() -> None:
    """Bytes another writer stored with live values in the spec: the record's state wins for
    status, attempts and times, its error and result when it has them; the spec's otherwise."""
    stale = encode_job(msgspec.structs.replace(full_job(), id=""))
    state = b"pending|0|-7|0000000000000001|||||||reports"

    plain = build_job("job-2", stale, state, b"", b"")
    errored = build_job("job-2", stale, state, ERROR, b"")

    assert (plain.status, plain.attempts, plain.started_at) == (JobStatus.PENDING, 0, None)
    assert (plain.error, plain.traceback, plain.result) == (
        "boom",
        "Traceback ...",
        full_job().result,
    )
    assert (errored.error, errored.error_type, errored.traceback) == ("boom", "ValueError", None)


@pytest.mark.parametrize(
    ("spec", "state", "err", "res"),
    [
        (FULL_SPEC, ENQUEUED_STATE, b"", b""),
        (MINIMAL_SPEC, b"running|1|0||tok||||||default", b"", b""),
        (MINIMAL_SPEC, b"failed|1|0||=t:fail||5|1000|2000|3000|q", FAILED_ERROR, RESULT),
        (encode_job(msgspec.structs.replace(full_job(), id="")), ENQUEUED_STATE, ERROR, b""),
    ],
    ids=["fresh", "leased", "every-part", "stale-slots"],
)
def test_a_job_built_at_once_is_the_job_built_field_by_field(
    spec: bytes, state: bytes, err: bytes, res: bytes
) -> None:
    """``build_job`` (and a reserve's rows) decode the spec as a ``Job`` and put the record's
    id, queue and live fields in at once: the same job, field for field and type for type, as
    ``merge_state`` builds from the decoded ``JobSpec``."""
    parsed = parse_state(state)
    by_fields = records.merge_state(decode_spec(spec), "j", parsed, err, res)

    assert same(records.merge_spec(decode_spec_job(spec), "j", parsed, err, res), by_fields)
    assert same(build_job("j", spec, state, err, res), by_fields)


def test_a_reordered_spec_is_refused_not_misread() -> None:
    """Swap two fields of the pinned bytes (created_at and queue): decoding fails."""
    items = msgspec.msgpack.decode(FULL_SPEC)
    items[3], items[5] = items[5], items[3]

    with pytest.raises(Exception, match="Expected"):
        decode_spec(msgspec.msgpack.encode(items))


# -- the state string: one table, the same in Python and in Lua ---------------------------------
def test_the_state_table_names_the_fields_the_scripts_write_in_their_order() -> None:
    # pack_state in lua/_common.lua: status, attempts, score, seq, token, cancel, sched,
    # started, completed, failed, queue.
    lua = "status attempts score seq token cancel sched started completed failed queue"
    assert [f.name for f in STATE_FIELDS] == lua.split()


def test_a_state_string_parses_field_by_field_and_formats_back() -> None:
    raw = b"retrying|3|-5|-999999999999998|=ab:retry|1|1714566900.25|1|22|333|a|b"

    state = parse_state(raw)

    assert (state.status, state.attempts, state.score, state.seq) == (
        JobStatus.RETRYING,
        3,
        -5,
        "-999999999999998",
    )
    assert (state.token, state.cancel, state.sched) == ("=ab:retry", True, 1714566900.25)
    assert (state.started, state.completed, state.failed, state.queue) == (
        0.001,
        0.022,
        0.333,
        "a|b",
    )
    assert format_state(state) == raw
    assert format_state(parse_state(ENQUEUED_STATE)) == ENQUEUED_STATE


@pytest.mark.parametrize(
    "field", [f.name for f in STATE_FIELDS if f.name not in ("token", "queue")]
)
def test_a_bad_state_field_is_named(field: str) -> None:
    parts = ENQUEUED_STATE.split(b"|")
    parts[[f.name for f in STATE_FIELDS].index(field)] = b"x"

    with pytest.raises(CorruptJobError, match=f"{field} holds 'x'"):
        parse_state(b"|".join(parts), "j")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py


@pytest.fixture
async def rh(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    async with open_redis_harness(REAL, request) as harness:
        yield harness


def _read(raw: bytes) -> State:
    """``raw`` parsed; and ``format_state`` writes each field as the scripts did (``sched`` the
    same seconds: Lua writes a computed due time as ``%.3f``, Python the shortest text)."""
    state = parse_state(raw)
    n = len(STATE_FIELDS) - 1
    for field, ours, theirs in zip(
        STATE_FIELDS, format_state(state).split(b"|", n), raw.split(b"|", n), strict=True
    ):
        if field.name == "sched":
            assert (float(ours) if ours else None) == (float(theirs) if theirs else None)
        else:
            assert ours == theirs, field.name
    assert parse_state(format_state(state)) == state
    return state


async def _state(rh: RedisHarness, job_id: str) -> bytes:
    """The state string of ``job_id``: from its live record, or from its done key."""
    raw = await rh.client.hget(rh.broker.keys.jobs, job_id)
    if raw is not None:
        return split_record(raw)[0]
    done = await rh.client.hget(rh.broker.keys.done(job_id), "state")
    assert done is not None
    return bytes(done)


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_record_after_enqueue_on_redis_is_these_bytes(rh: RedisHarness) -> None:
    await rh.broker.enqueue([minimal_job()])

    raw = await rh.client.hget(rh.broker.keys.jobs, "job-1")

    assert raw == b"26:" + ENQUEUED_STATE + MINIMAL_SPEC
    got = await rh.broker.get("job-1")
    assert got is not None
    assert same(got, minimal_job())


@pytest.mark.redis
@pytest.mark.anyio
async def test_python_reads_every_state_the_scripts_write(rh: RedisHarness) -> None:
    """Each script that writes a state (enqueue, reserve, extend, settle of every kind, cancel,
    requeue): Python parses it, and writes it back field for field (``_read``)."""
    b = rh.broker
    seen: list[bytes] = []

    async def look(job_id: str, status: JobStatus, attempts: int) -> None:
        raw = await _state(rh, job_id)
        state = _read(raw)
        assert (state.status, state.attempts, state.queue) == (status, attempts, "q")
        seen.append(raw)

    def job(job_id: str, **options: Any) -> Job:
        return Job(id=job_id, task="t", queue="q", payload=encode_arguments((), {}),
                   created_at=CREATED, **options)  # fmt: skip

    later = datetime(2100, 1, 1, tzinfo=UTC)
    await b.enqueue([job("a"), job("b", priority=5), job("c", scheduled_at=later)])
    assert await _state(rh, "a") == b"pending|0|0||||||||q"
    assert await _state(rh, "b") == b"pending|0|-5|0000000000000001|||||||q"
    assert await _state(rh, "c") == b"scheduled|0|0||||4102444800.0||||q"
    await look("c", JobStatus.SCHEDULED, 0)

    leases = {lease.job.id: lease for lease in await b.reserve(["q"], count=2, lease=30, timeout=0)}
    await look("a", JobStatus.RUNNING, 1)
    await b.extend(list(leases.values()), lease=60)
    await look("b", JobStatus.RUNNING, 1)
    await b.settle([
        Outcome(job_id="a", token=leases["a"].token, kind=OutcomeKind.RETRY, delay=60),
        Outcome(job_id="b", token=leases["b"].token, kind=OutcomeKind.RETRY, error="x"),
    ])  # fmt: skip
    await look("a", JobStatus.RETRYING, 1)
    await look("b", JobStatus.PENDING, 1)  # at the front of its priority: seq '-<15 digits>'
    assert parse_state(await _state(rh, "b")).seq.startswith("-")

    (lease,) = await b.reserve(["q"], count=1, lease=30, timeout=0)
    await b.settle([Outcome(job_id="b", token=lease.token, kind=OutcomeKind.DEAD_LETTER)])
    await look("b", JobStatus.DEAD_LETTER, 2)
    await b.requeue_dead("q")
    await look("b", JobStatus.PENDING, 0)
    (lease,) = await b.reserve(["q"], count=1, lease=30, timeout=0)
    await b.cancel("b")
    await look("b", JobStatus.RUNNING, 1)
    assert parse_state(await _state(rh, "b")).cancel
    await b.settle([Outcome(job_id="b", token=lease.token, kind=OutcomeKind.RELEASE)])
    await look("b", JobStatus.CANCELLED, 1)
    await b.cancel("c")
    await look("c", JobStatus.CANCELLED, 0)

    await b.enqueue([job("d"), job("e"), job("f")])
    got = {lease.job.id: lease for lease in await b.reserve(["q"], count=3, lease=30, timeout=0)}
    await b.settle([
        Outcome(job_id="d", token=got["d"].token, kind=OutcomeKind.COMPLETE,
                result=JobResult(success=True, value=1)),
        Outcome(job_id="e", token=got["e"].token, kind=OutcomeKind.FAIL, error="no"),
        Outcome(job_id="f", token=got["f"].token, kind=OutcomeKind.RELEASE),
    ])  # fmt: skip
    await look("d", JobStatus.COMPLETED, 1)
    await look("e", JobStatus.FAILED, 1)
    await look("f", JobStatus.PENDING, 0)
    assert len(set(seen)) == len(seen)


@pytest.mark.redis
@pytest.mark.anyio
async def test_the_scripts_write_an_error_value_as_python_does(rh: RedisHarness) -> None:
    """``mp_error`` (Lua) and ``encode_error`` (Python) agree: a job whose state cannot be read
    is dead-lettered by the reserve script, with an error value Python could have written."""
    k = rh.broker.keys
    await rh.broker.enqueue([minimal_job()])
    _, spec = split_record(await rh.client.hget(k.jobs, "job-1"))
    await rh.client.hset(k.jobs, "job-1", join_record(b"pending|x|0||||||||default", spec))

    assert await rh.broker.reserve(["default"], count=1, lease=30, timeout=0) == []

    why = "job record unreadable: attempts 'x'"
    assert await rh.client.hget(k.err, "job-1") == encode_error(why, "CorruptJobError", None)
    assert _read(await _state(rh, "job-1")).status is JobStatus.DEAD_LETTER


def test_the_scripts_know_a_job_without_limits_by_the_last_bytes_of_its_spec() -> None:
    """``_limits.lua`` decides that a job has no limits from its spec's tail alone: the tail of
    a spec with every field from ``limits`` on at its default. Its constant must be those bytes
    (a field added after ``limits`` changes them), or every job takes the slow path."""
    lua = (Path(records.__file__).parent / "lua" / "_limits.lua").read_text()
    found = re.search(r"^local NO_LIMITS_TAIL = '((?:\\\d+)+)'$", lua, re.M)
    assert found is not None
    tail = bytes(int(code) for code in found.group(1).split("\\")[1:])

    assert MINIMAL_SPEC.endswith(tail)
    # It starts at progress (None: 0xc0, which no UTF-8 limit key holds), then limits ().
    assert MINIMAL_SPEC[-len(tail) :] == b"\xc0\x90" + b"\xc0" * (len(tail) - 2)
    assert not FULL_SPEC.endswith(tail)


@pytest.mark.redis
@pytest.mark.anyio
async def test_the_settle_script_writes_an_attempt_as_pinned(rh: RedisHarness) -> None:
    """``lua/_attempts.lua`` appends an attempt as ``FAILED_ERROR`` holds it, byte for byte (but
    its end: the server's time): the job's second run of ``full_job()``, settled RETRY."""
    k = rh.broker.keys
    await rh.broker.enqueue([minimal_job()])
    _, spec = split_record(await rh.client.hget(k.jobs, "job-1"))
    state = b"running|2|0||tok|||1714566601000|||default"
    await rh.client.hset(k.jobs, "job-1", join_record(state, spec))
    first = msgspec.msgpack.decode(FAILED_ERROR)[3]
    await rh.client.hset(
        k.err, "job-1", msgspec.msgpack.encode(["first", "ValueError", None, first])
    )
    job = full_job()
    retry = Outcome(
        job_id="job-1",
        token="tok|default",
        kind=OutcomeKind.RETRY,
        delay=60,
        error=job.error,
        error_type=job.error_type,
        traceback=job.traceback,
    )

    assert await rh.broker.settle([retry]) == [True]

    raw = await rh.client.hget(k.err, "job-1")
    ended = msgspec.msgpack.decode(raw)[4][2]
    pinned_end = bytes.fromhex("cf0000018f342220f8")
    assert raw == FAILED_ERROR.replace(pinned_end, b"\xcf" + ended.to_bytes(8, "big"))
