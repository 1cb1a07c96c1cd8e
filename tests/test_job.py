"""Unit tests of taskit.job: the wire format, argument payloads and their errors."""

from __future__ import annotations

import os
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from taskit.dependencies import After, Feed, IfFailed
from taskit.errors import SerializationError
from taskit.job import (
    SCHEMA_VERSION,
    Attempt,
    Job,
    JobResult,
    JobStatus,
    OutcomeKind,
    decode_arguments,
    decode_job,
    encode_arguments,
    encode_job,
    encode_value,
    new_job_id,
    stored_form,
    utc_from_timestamp,
)
from tests._ci import missing

CREATED = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def make_job(*args: Any, **kwargs: Any) -> Job:
    return Job(
        id="job-1",
        task="tests.add",
        queue="default",
        payload=encode_arguments(args, kwargs),
        created_at=CREATED,
    )


def full_job() -> Job:
    """A job with every field away from its default."""
    return Job(
        id="job-2",
        task="tests.report",
        queue="reports",
        payload=encode_arguments([1, "two", [3.5, None]], {"flag": True, "nested": {"k": [1]}}),
        created_at=CREATED,
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
        traceback="Traceback (most recent call last): ...",
        result=JobResult(success=False, value=[1, 2], error="boom", error_type="X", duration=0.25),
        metadata={"trace": "abc", "count": 3},
        created_by="tests",
    )


# -- the job wire format -----------------------------------------------------------------------
@pytest.mark.parametrize("job", [make_job(), full_job()], ids=["defaults", "every-field"])
def test_a_job_survives_an_encode_decode_round_trip(job: Job) -> None:
    decoded = decode_job(encode_job(job))

    assert decoded == job
    assert decoded.status is job.status
    assert decoded.created_at.tzinfo is not None
    assert (decoded.args, decoded.kwargs) == (job.args, job.kwargs)


def test_decode_job_accepts_a_memoryview() -> None:
    job = full_job()

    assert decode_job(memoryview(encode_job(job))) == job


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        b"not msgpack at all",
        encode_value({"id": "x"}),  # a map, but not a job: required fields missing
        encode_value([1, 2, 3]),
        encode_job(make_job())[:-3],  # truncated
    ],
    ids=["empty", "reserved-byte", "text", "partial-map", "array", "truncated"],
)
def test_decode_job_of_garbage_raises_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError, match="not a valid job"):
        decode_job(data)


def test_decode_job_of_a_bad_status_raises_serialization_error() -> None:
    raw = msgspec.msgpack.decode(encode_job(make_job()))[:6]  # the tag and the five set fields
    raw += [0, "exploded"]  # priority, then status (the wire form is an array in field order)

    with pytest.raises(SerializationError):
        decode_job(msgspec.msgpack.encode(raw))


def test_the_wire_form_carries_the_schema_version() -> None:
    assert msgspec.msgpack.decode(encode_job(make_job()))[0] == SCHEMA_VERSION


def test_a_job_of_another_schema_version_is_rejected_not_misread() -> None:
    raw = msgspec.msgpack.decode(encode_job(make_job()))
    raw[0] = SCHEMA_VERSION + 1

    with pytest.raises(SerializationError, match=r"\$\[0\]"):
        decode_job(msgspec.msgpack.encode(raw))


def test_jobs_do_not_share_their_default_metadata() -> None:
    first, second = make_job(), make_job()

    first.metadata["mine"] = True

    assert second.metadata == {}


# -- argument payloads -------------------------------------------------------------------------
def test_args_and_kwargs_decode_the_payload() -> None:
    job = make_job(1, "two", [3, 4], None, key={"a": 1.5}, other=b"\x00\x01")

    assert job.args == (1, "two", [3, 4], None)
    assert job.kwargs == {"key": {"a": 1.5}, "other": b"\x00\x01"}


def test_a_job_without_arguments_has_empty_args_and_kwargs() -> None:
    job = make_job()

    assert (job.args, job.kwargs) == ((), {})


def test_encode_then_decode_arguments_round_trips() -> None:
    payload = encode_arguments((1, [True, None]), {"name": "x", "when": CREATED})

    args, kwargs = decode_arguments(payload)

    assert args == [1, [True, None]]
    assert kwargs == {"name": "x", "when": CREATED}


@pytest.mark.parametrize(
    "payload",
    [
        msgspec.Raw(b"\xc1"),
        msgspec.Raw(encode_value({"args": []})),
        msgspec.Raw(encode_value([[1], {"k": 1}, "extra"])),
        msgspec.Raw(encode_value([[1], {1: "non-string key"}])),
    ],
    ids=["garbage", "map", "three-items", "int-key"],
)
def test_a_malformed_payload_raises_serialization_error(payload: msgspec.Raw) -> None:
    job = msgspec.structs.replace(make_job(), payload=payload)

    with pytest.raises(SerializationError, match=r"\[args, kwargs\]"):
        decode_arguments(payload)
    with pytest.raises(SerializationError):
        _ = job.args
    with pytest.raises(SerializationError):
        _ = job.kwargs


def test_encode_arguments_names_a_bad_argument_by_parameter_name() -> None:
    with pytest.raises(SerializationError, match=r"argument 'handle'.*type object") as caught:
        encode_arguments([1, object()], {}, names=["count", "handle"])

    assert "count" not in str(caught.value)


def test_encode_arguments_names_a_bad_argument_by_position_without_names() -> None:
    with pytest.raises(SerializationError, match=r"positional argument 2 .*type object"):
        encode_arguments([1, "ok", object()], {})


def test_encode_arguments_falls_back_to_positions_past_the_known_names() -> None:
    with pytest.raises(SerializationError, match="positional argument 1 "):
        encode_arguments(["ok", object()], {}, names=["first"])


def test_encode_arguments_names_a_bad_keyword_argument_by_key() -> None:
    with pytest.raises(SerializationError, match=r"argument 'callback' .*type function"):
        encode_arguments([1], {"fine": 2, "callback": lambda: None}, names=["a"])


def test_encode_arguments_errors_are_value_errors_with_a_cause() -> None:
    with pytest.raises(ValueError, match="cannot be serialized") as caught:
        encode_arguments([object()], {})

    assert caught.value.__cause__ is not None


def test_encode_arguments_names_a_value_too_large_for_msgpack() -> None:
    with pytest.raises(SerializationError, match="argument 'big'"):
        encode_arguments([2**70], {}, names=["big"])


def test_encode_value_names_the_type_it_cannot_encode() -> None:
    class Opaque:
        pass

    with pytest.raises(SerializationError, match="type Opaque"):
        encode_value(Opaque())
    assert msgspec.msgpack.decode(encode_value({"a": [1]})) == {"a": [1]}


# -- builtins and helpers ----------------------------------------------------------------------
def test_to_builtins_gives_json_friendly_data_with_arguments_in_place_of_the_payload() -> None:
    data = full_job().to_builtins()

    assert "payload" not in data
    assert data["args"] == [1, "two", [3.5, None]]
    assert data["kwargs"] == {"flag": True, "nested": {"k": [1]}}
    assert data["status"] == "retrying"
    assert data["created_at"] == CREATED.isoformat().replace("+00:00", "Z")
    assert msgspec.json.decode(msgspec.json.encode(data)) == data
    assert make_job().to_builtins()["status"] == "pending"


def test_utc_from_timestamp_is_aware_utc() -> None:
    moment = utc_from_timestamp(1_700_000_000.5)

    assert moment.tzinfo is UTC
    assert moment == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)


@pytest.mark.parametrize("status", list(JobStatus))
def test_exactly_the_terminal_states_are_finished(status: JobStatus) -> None:
    terminal = {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.DEAD_LETTER,
        JobStatus.CANCELLED,
    }

    assert status.finished is (status in terminal)


# -- job ids -----------------------------------------------------------------------------------
def test_job_ids_are_22_url_safe_characters_and_do_not_repeat() -> None:
    ids = [new_job_id() for _ in range(3000)]  # more than one pool of random bytes

    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", job_id) for job_id in ids)


def test_job_ids_never_start_with_a_dash() -> None:
    """A leading ``-`` made ``taskit cancel APP <id>`` read the id as an option (1 id in 64)."""
    ids = [new_job_id() for _ in range(20_000)]  # P(no dash-led id before the fix) ~ 1e-137

    assert not [job_id for job_id in ids if job_id.startswith("-")]
    assert sum(job_id.startswith("_") for job_id in ids) > 0


def test_threads_never_share_job_ids() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(new_job_id() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    every = [job_id for ids in made for job_id in ids]
    assert len(set(every)) == len(every) == 8000


def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    if not hasattr(os, "fork"):
        missing("os.fork is not available on this platform")
    new_job_id()  # the parent's pool holds unused bytes when it forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(write, " ".join(new_job_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode().split()
    parent = [new_job_id() for _ in range(5)]

    assert len(child) == 5
    assert not set(child) & set(parent)


# -- the stored form ---------------------------------------------------------------------------
def test_stored_form_of_a_fresh_job_is_the_job_and_its_spec_without_the_id() -> None:
    job = make_job(1, "two")

    stored, spec = stored_form(job)

    assert stored is job
    assert decode_job(spec) == msgspec.structs.replace(job, id="")


def test_stored_form_clears_what_an_enqueue_resets() -> None:
    job = full_job()

    stored, spec = stored_form(job)

    fresh = msgspec.structs.replace(
        job, status=JobStatus.PENDING, attempts=0, scheduled_at=None, started_at=None,
        completed_at=None, failed_at=None, result=None, error=None, error_type=None,
        traceback=None, failures=(),
    )  # fmt: skip
    assert stored == fresh
    assert job.status is JobStatus.RETRYING  # the caller's job is left as it was
    assert decode_job(spec) == msgspec.structs.replace(fresh, id="")


@pytest.mark.parametrize("payload", [b"\xc1", b"\x92\x90", b""], ids=["bad-opcode", "cut", "empty"])
def test_stored_form_refuses_a_payload_that_is_not_msgpack(payload: bytes) -> None:
    job = msgspec.structs.replace(make_job(), payload=msgspec.Raw(payload))

    with pytest.raises(SerializationError):
        stored_form(job)


def test_stored_form_refuses_a_field_of_the_wrong_type() -> None:
    job = msgspec.structs.replace(make_job(), max_retries="three")  # type: ignore[arg-type]

    with pytest.raises(SerializationError):
        stored_form(job)


def test_stored_form_names_the_job_whose_value_cannot_be_encoded() -> None:
    job = msgspec.structs.replace(make_job(), metadata={"when": object()})

    with pytest.raises(SerializationError, match="job-1"):
        stored_form(job)


def test_to_builtins_names_what_a_job_waits_for() -> None:
    job = msgspec.structs.replace(
        make_job(), workflow="wf-1", after=After(("a", "b"), Feed.ALL, IfFailed.CONTINUE)
    )

    data = job.to_builtins()

    assert data["workflow"] == "wf-1"
    assert data["after"] == {"jobs": ["a", "b"], "feed": "all", "if_failed": "continue"}
    assert msgspec.json.decode(msgspec.json.encode(data)) == data
    assert make_job().to_builtins()["after"] is None


def test_to_builtins_names_each_failed_attempts_fields() -> None:
    ended = CREATED + timedelta(seconds=2)
    job = msgspec.structs.replace(
        make_job(),
        failures=(
            Attempt(1, None, CREATED, OutcomeKind.RETRY),
            Attempt(2, CREATED, ended, OutcomeKind.DEAD_LETTER, "boom", "ValueError"),
        ),
    )

    data = job.to_builtins()

    assert data["failures"] == [
        {"number": 1, "started_at": None, "ended_at": "2024-05-01T12:30:00Z",
         "outcome": "retry", "error": None, "error_type": None},
        {"number": 2, "started_at": "2024-05-01T12:30:00Z", "ended_at": "2024-05-01T12:30:02Z",
         "outcome": "dead_letter", "error": "boom", "error_type": "ValueError"},
    ]  # fmt: skip
    assert msgspec.json.decode(msgspec.json.encode(data)) == data
    assert make_job().to_builtins()["failures"] == []


def test_stored_form_clears_the_failed_attempts() -> None:
    job = msgspec.structs.replace(
        make_job(), failures=(Attempt(1, None, CREATED, OutcomeKind.FAIL),)
    )

    stored, _ = stored_form(job)

    assert stored.failures == ()
    assert stored == msgspec.structs.replace(job, failures=())
