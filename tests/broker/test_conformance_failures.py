"""Broker conformance: a job's failed attempts (``Job.failures``), as ``settle`` keeps them.

Each applied RETRY, FAIL or DEAD_LETTER appends one ``Attempt`` (its number, the lease's start,
the broker's time of the settle, the kind, the outcome's error and type), oldest first, the
newest ``MAX_FAILURES`` kept; a success, a release, a cancel and a stale or repeated settle add
none. The history is kept wherever the job's error is: its record, its dead letter, its done
record, through ``requeue_dead``.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from taskit.job import (
    MAX_FAILURES,
    Attempt,
    Job,
    JobResult,
    JobStatus,
    Lease,
    Outcome,
    OutcomeKind,
)
from tests.broker._helpers import LONG, make_job, new_queue, outcome, running
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio


async def again(harness: BrokerHarness, queue: str) -> Lease:
    """The one job of ``queue``, reserved (it is ready at once)."""
    [held] = await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0)
    return held


async def fail(harness: BrokerHarness, held: Lease, kind: OutcomeKind, n: int) -> None:
    """Settle ``held`` as ``kind`` with error ``e<n>`` of type ``E<n>`` (a retry: due at once)."""
    failure = outcome(held, kind, error=f"e{n}", error_type=f"E{n}", traceback=f"tb{n}")
    assert await harness.broker.settle([failure]) == [True]


async def got(harness: BrokerHarness, job_id: str) -> Job:
    job = await harness.broker.get(job_id)
    assert job is not None
    return job


def ended_between(attempt: Attempt, start: datetime, end: datetime) -> bool:
    return attempt.started_at == start and start <= attempt.ended_at <= end


async def test_each_failed_attempt_is_kept_in_order_through_requeue_and_completion(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    leases = [await running(harness.broker, queue)]
    await fail(harness, leases[-1], OutcomeKind.RETRY, 1)
    leases.append(await again(harness, queue))
    assert [a.number for a in leases[-1].job.failures] == [1]  # a lease shows them too
    await fail(harness, leases[-1], OutcomeKind.RETRY, 2)
    leases.append(await again(harness, queue))
    await fail(harness, leases[-1], OutcomeKind.DEAD_LETTER, 3)
    job_id = leases[0].job.id

    dead = await got(harness, job_id)
    assert dead.status is JobStatus.DEAD_LETTER
    assert [(a.number, a.outcome, a.error, a.error_type) for a in dead.failures] == [
        (1, OutcomeKind.RETRY, "e1", "E1"),
        (2, OutcomeKind.RETRY, "e2", "E2"),
        (3, OutcomeKind.DEAD_LETTER, "e3", "E3"),
    ]
    assert (dead.error, dead.traceback) == ("e3", "tb3")  # the latest, the one traceback kept
    for i, attempt in enumerate(dead.failures):
        start = leases[i].job.started_at
        assert start is not None
        end = leases[i + 1].job.started_at if i < 2 else dead.failed_at
        assert end is not None
        assert ended_between(attempt, start, end)
    assert dead.failures[-1].ended_at == dead.failed_at
    assert [letter.failures for letter in await harness.broker.dead_letters(queue)] == [
        dead.failures
    ]

    assert await harness.broker.requeue_dead(queue) == 1
    assert (await got(harness, job_id)).failures == dead.failures
    last = await again(harness, queue)
    assert last.job.attempts == 1  # the attempts restart: the next failure would be number 1
    done = outcome(last, OutcomeKind.COMPLETE, result=JobResult(success=True, value=1))
    assert await harness.broker.settle([done]) == [True]

    completed = await got(harness, job_id)  # its record kept after its end (the done key)
    assert completed.status is JobStatus.COMPLETED
    assert completed.failures == dead.failures


async def test_a_job_that_succeeds_the_first_time_has_no_failures(harness: BrokerHarness) -> None:
    held = await running(harness.broker, new_queue())
    assert held.job.failures == ()
    done = outcome(held, OutcomeKind.COMPLETE, result=JobResult(success=True, value=1))
    assert await harness.broker.settle([done]) == [True]

    assert (await got(harness, held.job.id)).failures == ()


async def test_a_fail_is_kept_with_its_result(harness: BrokerHarness) -> None:
    held = await running(harness.broker, new_queue())
    result = JobResult(success=False, error="no", error_type="Declined")
    failure = outcome(held, OutcomeKind.FAIL, result=result, error="no", error_type="Declined")
    assert await harness.broker.settle([failure]) == [True]

    job = await got(harness, held.job.id)
    assert job.status is JobStatus.FAILED
    [attempt] = job.failures
    assert (attempt.number, attempt.outcome, attempt.error, attempt.error_type) == (
        1,
        OutcomeKind.FAIL,
        "no",
        "Declined",
    )
    assert attempt.started_at == held.job.started_at
    assert attempt.ended_at == job.failed_at


async def test_only_the_newest_failures_are_kept(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    for n in range(1, MAX_FAILURES + 1):
        await fail(harness, held, OutcomeKind.RETRY, n)
        held = await again(harness, queue)
    await fail(harness, held, OutcomeKind.DEAD_LETTER, MAX_FAILURES + 1)

    job = await got(harness, held.job.id)
    assert [a.number for a in job.failures] == list(range(2, MAX_FAILURES + 2))
    assert [a.error for a in job.failures] == [f"e{n}" for n in range(2, MAX_FAILURES + 2)]
    assert job.failures[-1].outcome is OutcomeKind.DEAD_LETTER


async def test_a_failure_sent_without_an_error_is_kept_without_one(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    await fail(harness, held, OutcomeKind.RETRY, 1)
    held = await again(harness, queue)
    assert await harness.broker.settle([outcome(held, OutcomeKind.RETRY)]) == [True]

    job = await got(harness, held.job.id)
    assert [(a.number, a.error, a.error_type) for a in job.failures] == [
        (1, "e1", "E1"),
        (2, None, None),
    ]
    assert (job.error, job.error_type) == ("e1", "E1")  # the job's error stays the last sent


async def test_a_stale_or_repeated_settle_adds_nothing(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    stale = Outcome(job_id=held.job.id, token="x" + held.token, kind=OutcomeKind.RETRY)
    assert await harness.broker.settle([stale]) == [False]
    assert (await got(harness, held.job.id)).failures == ()

    retry = outcome(held, OutcomeKind.RETRY, error="e1", delay=60.0)
    assert await harness.broker.settle([retry]) == [True]
    assert await harness.broker.settle([retry]) == [True]  # its reply was lost: sent again

    job = await got(harness, held.job.id)
    assert job.status is JobStatus.RETRYING
    assert [a.error for a in job.failures] == ["e1"]


async def test_a_release_or_a_retry_turned_cancel_is_no_failure(harness: BrokerHarness) -> None:
    queue = new_queue()
    await harness.broker.enqueue([make_job(queue), make_job(queue)])
    first, second = await harness.broker.reserve([queue], count=2, lease=LONG, timeout=0)
    assert await harness.broker.cancel(second.job.id)  # requested while it runs

    assert await harness.broker.settle(
        [outcome(first, OutcomeKind.RELEASE), outcome(second, OutcomeKind.RETRY, error="x")]
    ) == [True, True]

    released, cancelled = [await got(harness, held.job.id) for held in (first, second)]
    assert (released.status, released.failures) == (JobStatus.PENDING, ())
    assert (cancelled.status, cancelled.failures) == (JobStatus.CANCELLED, ())
