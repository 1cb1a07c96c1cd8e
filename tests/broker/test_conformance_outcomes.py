"""Broker conformance: what ``settle`` stores of an outcome, checked member by member.

An exception given as an error is stored as text (message, type, traceback); an outcome that
cannot be stored fails its own job with an error naming the problem, and never the other jobs
settled in the same call; nothing stored ever breaks a later read.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from taskit.job import JobResult, JobStatus, Lease, Outcome, OutcomeKind
from tests.broker._helpers import make_job, new_queue, outcome, reserve_all, running
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio


def raised(message: str) -> ValueError:
    """A ValueError that was raised, so it carries a traceback."""
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


async def leases(harness: BrokerHarness, queue: str, count: int) -> list[Lease]:
    await harness.broker.enqueue([make_job(queue, i) for i in range(count)])
    held = await reserve_all(harness.broker, queue)
    assert len(held) == count
    return held


async def test_an_exception_as_the_error_is_stored_as_type_message_and_traceback(
    harness: BrokerHarness,
) -> None:
    held = await running(harness.broker, new_queue())
    result = JobResult(success=False)
    result.error = raised("x")  # type: ignore[assignment] # set after construction on purpose
    error: Any = raised("x")  # on the outcome too, as a hand-made one might carry it
    failure = outcome(held, OutcomeKind.FAIL, result=result, error=error)

    assert await harness.broker.settle([failure]) == [True]

    job = await harness.broker.get(held.job.id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert (job.error, job.error_type) == ("x", "ValueError")
    assert job.traceback is not None
    assert "in raised" in job.traceback
    assert job.traceback.endswith("ValueError: x\n")
    assert job.result is not None
    assert (job.result.error, job.result.error_type) == ("x", "ValueError")
    assert job.result.traceback is not None
    assert "ValueError: x" in job.result.traceback


async def test_a_dead_letter_keeps_an_exception_error_as_text(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    error: Any = KeyError("gone")

    assert await harness.broker.settle([outcome(held, OutcomeKind.DEAD_LETTER, error=error)]) == [
        True
    ]

    [letter] = await harness.broker.dead_letters(queue)
    assert (letter.error, letter.error_type, letter.traceback) == (
        "'gone'",
        "KeyError",
        "KeyError: 'gone'\n",
    )


def _raw_not_msgpack() -> JobResult:
    return JobResult(success=True, value=msgspec.Raw(b"\xc1"))  # 0xc1: never valid msgpack


UNSTORABLE: dict[str, tuple[Any, str]] = {
    # result, what the error must name
    "object value": (JobResult(success=True, value=object()), "value of type object"),
    "huge int": (JobResult(success=True, value=2**70), "value of type int"),
    "surrogate value": (JobResult(success=True, value="\ud800"), "value of type str"),
    "raw not msgpack": (_raw_not_msgpack(), "is not serializable"),
    "error of wrong type": (JobResult(success=False, error=42), "field 'error'"),  # type: ignore[arg-type]
    "success not a bool": (JobResult(success="yes"), "field 'success'"),  # type: ignore[arg-type]
    "not a JobResult": (42, "result must be a JobResult, got int"),
    "a dict for a JobResult": ({"success": True}, "result must be a JobResult, got dict"),
}


@pytest.mark.parametrize("case", list(UNSTORABLE), ids=list(UNSTORABLE))
async def test_one_unstorable_result_fails_its_job_alone(harness: BrokerHarness, case: str) -> None:
    bad_result, named = UNSTORABLE[case]
    queue = new_queue()
    held = await leases(harness, queue, 6)
    good = [
        outcome(lease, OutcomeKind.COMPLETE, result=JobResult(success=True, value=i))
        for i, lease in enumerate(held[:5])
    ]
    bad = outcome(held[5], OutcomeKind.COMPLETE, result=bad_result)

    assert await harness.broker.settle([*good[:2], bad, *good[2:]]) == [True] * 6

    for i, lease in enumerate(held[:5]):
        job = await harness.broker.get(lease.job.id)
        assert job is not None
        assert (job.status, job.attempts) == (JobStatus.COMPLETED, 1)
        assert job.result == JobResult(success=True, value=i)
    failed = await harness.broker.get(held[5].job.id)  # readable: nothing unreadable was stored
    assert failed is not None
    assert (failed.status, failed.attempts, failed.error_type) == (
        JobStatus.FAILED,
        1,
        "SerializationError",
    )
    assert failed.error is not None
    assert f"outcome of job {failed.id} cannot be stored" in failed.error
    assert named in failed.error
    assert failed.result is not None
    assert (failed.result.success, failed.result.error) == (False, failed.error)
    stats = (await harness.broker.stats([queue]))[queue]
    assert (stats.running, stats.completed, stats.failed) == (0, 5, 1)
    assert await reserve_all(harness.broker, queue) == []  # nothing runs again


async def test_error_fields_that_are_not_text_are_replaced_and_the_kind_kept(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    first, second = await leases(harness, queue, 2)
    error: Any = {"code": 3}
    retry = outcome(first, OutcomeKind.RETRY, delay=60.0, error=error, error_type="E")
    done = outcome(second, OutcomeKind.COMPLETE, result=JobResult(success=True, value=1))

    assert await harness.broker.settle([retry, done]) == [True, True]

    job = await harness.broker.get(first.job.id)
    assert job is not None
    assert (job.status, job.error_type) == (JobStatus.RETRYING, "SerializationError")
    assert job.error is not None
    assert "error (dict) must be text" in job.error
    assert (await harness.broker.get(second.job.id)).status is JobStatus.COMPLETED  # type: ignore[union-attr]


async def test_lone_surrogates_in_error_text_are_escaped_not_refused(
    harness: BrokerHarness,
) -> None:
    held = await running(harness.broker, new_queue())
    failure = outcome(
        held,
        OutcomeKind.FAIL,
        result=JobResult(success=False, error="bad name caf\udce9"),
        error="bad name caf\udce9",
        error_type="UnicodeError",
        traceback="tb \udce9",
    )

    assert await harness.broker.settle([failure]) == [True]

    job = await harness.broker.get(held.job.id)
    assert job is not None
    assert (job.status, job.error, job.traceback) == (
        JobStatus.FAILED,
        "bad name caf\\udce9",
        "tb \\udce9",
    )
    assert job.result is not None
    assert job.result.error == "bad name caf\\udce9"


async def test_an_outcome_naming_no_lease_is_stale_and_the_others_settle(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    [held] = await leases(harness, queue, 1)
    nonsense: Any = 12345
    stray = Outcome(job_id=nonsense, token=nonsense, kind=OutcomeKind.COMPLETE)
    no_delay: Any = "soon"
    odd = Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.RETRY, delay=no_delay)
    done = outcome(held, OutcomeKind.COMPLETE, result=JobResult(success=True, value=1))

    assert await harness.broker.settle([stray, odd, done]) == [False, False, True]

    job = await harness.broker.get(held.job.id)
    assert job is not None
    assert job.status is JobStatus.COMPLETED
