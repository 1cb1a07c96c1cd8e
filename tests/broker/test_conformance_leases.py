"""Broker conformance: the lease life cycle, ``extend``, ``settle`` and ``reclaim``.

Runs unchanged against every broker kind. Leases are short (0.3 s) and ``harness.advance``
lets slightly more than that pass, so the suite also holds on a real server's clock.
"""

from __future__ import annotations

import uuid

import pytest

from taskit.job import (
    JobResult,
    JobStatus,
    Lease,
    LeaseState,
    Outcome,
    OutcomeKind,
)
from tests.broker._helpers import (
    LONG,
    make_job,
    new_queue,
    outcome,
    reserve_all,
    running,
    status_of,
)
from tests.broker._sharded import shard_id
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

LEASE = 0.3
PAST_LEASE = 0.4
DELAY = 0.3
PAST_DELAY = 0.4


# -- extend ------------------------------------------------------------------------------------
async def test_extend_answers_held_for_the_current_token(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue, lease=LEASE)

    assert await harness.broker.extend([held], lease=LONG) == [LeaseState.HELD]

    # The deadline moved: the original lease time passes and nobody can reclaim the job.
    await harness.advance(PAST_LEASE)
    assert await harness.broker.reclaim([queue], lease=LONG) == []
    assert await harness.broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]


async def test_extend_answers_lost_for_a_stale_or_unknown_token(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    forged = Lease(job=held.job, token="not-the-token", deadline=held.deadline)
    never_enqueued = Lease(job=make_job(queue), token=held.token, deadline=held.deadline)

    states = await harness.broker.extend([forged, held, never_enqueued], lease=LONG)

    assert states == [LeaseState.LOST, LeaseState.HELD, LeaseState.LOST]


async def test_extend_answers_lost_once_the_job_is_settled(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    assert await harness.broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]

    assert await harness.broker.extend([held], lease=LONG) == [LeaseState.LOST]


async def test_extend_answers_cancelled_after_cancel_of_a_running_job(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue, lease=LEASE)

    assert await harness.broker.cancel(held.job.id) is True
    assert await harness.broker.extend([held], lease=LONG) == [LeaseState.CANCELLED]

    # The lease was still extended: it outlives its first deadline and is not reclaimed.
    await harness.advance(PAST_LEASE)
    assert await harness.broker.reclaim([queue], lease=LONG) == []
    assert await harness.broker.settle([outcome(held, OutcomeKind.CANCEL)]) == [True]
    assert await status_of(harness.broker, held.job.id) is JobStatus.CANCELLED


# -- settle ------------------------------------------------------------------------------------
async def test_settle_complete_keeps_the_result(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    result = JobResult(success=True, value={"answer": 42}, duration=0.5)

    assert await harness.broker.settle([outcome(held, OutcomeKind.COMPLETE, result=result)]) == [
        True
    ]

    job = await harness.broker.get(held.job.id)
    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.result == result
    assert job.completed_at is not None
    assert job.attempts == 1
    stats = (await harness.broker.stats([queue]))[queue]
    assert (stats.running, stats.completed, stats.failed) == (0, 1, 0)
    assert await reserve_all(harness.broker, queue) == []


async def test_settle_fail_makes_the_job_failed_and_keeps_the_error(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    failure = outcome(
        held,
        OutcomeKind.FAIL,
        result=JobResult(success=False, error="bad input"),
        error="bad input",
        error_type="ValueError",
    )

    assert await harness.broker.settle([failure]) == [True]

    job = await harness.broker.get(held.job.id)
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert (job.error, job.error_type) == ("bad input", "ValueError")
    assert job.result == JobResult(success=False, error="bad input")
    stats = (await harness.broker.stats([queue]))[queue]
    assert (stats.running, stats.completed, stats.failed) == (0, 0, 1)
    assert await reserve_all(harness.broker, queue) == []


async def test_settle_retry_with_a_delay_waits_before_the_next_attempt(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    retry = outcome(
        held, OutcomeKind.RETRY, delay=DELAY, error="flaky", error_type="OSError", traceback="tb"
    )

    assert await harness.broker.settle([retry]) == [True]

    assert await status_of(harness.broker, held.job.id) is JobStatus.RETRYING
    assert await reserve_all(harness.broker, queue) == []
    await harness.advance(PAST_DELAY)
    [again] = await reserve_all(harness.broker, queue)
    assert again.job.id == held.job.id
    assert again.job.attempts == 2
    assert again.token != held.token
    assert (again.job.error, again.job.error_type) == ("flaky", "OSError")


async def test_the_last_error_survives_a_later_success(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    await harness.broker.settle([outcome(held, OutcomeKind.RETRY, error="flaky", traceback="tb")])
    [again] = await reserve_all(harness.broker, queue)

    done = outcome(again, OutcomeKind.COMPLETE, result=JobResult(success=True, value=1))
    assert await harness.broker.settle([done]) == [True]

    job = await harness.broker.get(held.job.id)
    assert job is not None
    assert (job.status, job.error, job.traceback) == (JobStatus.COMPLETED, "flaky", "tb")


async def test_settle_retry_without_delay_is_reservable_at_once(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)

    assert await harness.broker.settle([outcome(held, OutcomeKind.RETRY, delay=0.0)]) == [True]

    [again] = await reserve_all(harness.broker, queue)
    assert (again.job.id, again.job.attempts) == (held.job.id, 2)


async def test_settle_dead_letter_moves_the_job_to_the_dead_letters(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    dead = outcome(
        held,
        OutcomeKind.DEAD_LETTER,
        error="gave up",
        error_type="RuntimeError",
        traceback="Traceback (most recent call last): ...",
    )

    assert await harness.broker.settle([dead]) == [True]

    assert await status_of(harness.broker, held.job.id) is JobStatus.DEAD_LETTER
    [letter] = await harness.broker.dead_letters(queue)
    assert letter.id == held.job.id
    assert letter.status is JobStatus.DEAD_LETTER
    assert (letter.error, letter.error_type) == ("gave up", "RuntimeError")
    assert letter.traceback == "Traceback (most recent call last): ..."
    assert (await harness.broker.stats([queue]))[queue].dead == 1
    assert await reserve_all(harness.broker, queue) == []


async def test_settle_cancel_makes_the_job_cancelled(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)

    assert await harness.broker.settle([outcome(held, OutcomeKind.CANCEL)]) == [True]

    assert await status_of(harness.broker, held.job.id) is JobStatus.CANCELLED
    assert await reserve_all(harness.broker, queue) == []


async def test_settle_release_makes_the_job_pending_and_refunds_the_attempt(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)

    assert await harness.broker.settle([outcome(held, OutcomeKind.RELEASE)]) == [True]

    job = await harness.broker.get(held.job.id)
    assert job is not None
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    [again] = await reserve_all(harness.broker, queue)
    assert (again.job.id, again.job.attempts) == (held.job.id, 1)


async def test_released_jobs_run_next_in_the_order_they_were_reserved(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    jobs = [make_job(queue, job_id=shard_id(harness.broker)) for _ in range(5)]
    await harness.broker.enqueue(jobs)
    held = await harness.broker.reserve([queue], count=3, lease=LONG, timeout=0)
    late = make_job(queue, job_id=shard_id(harness.broker))
    await harness.broker.enqueue([late])
    retried = Outcome(job_id=held[2].job.id, token=held[2].token, kind=OutcomeKind.RETRY)

    # Handed back in any order (a worker's runners stop in no set order), by one call.
    released = [
        outcome(held[1], OutcomeKind.RELEASE),
        retried,
        outcome(held[0], OutcomeKind.RELEASE),
    ]
    assert await harness.broker.settle(released) == [True, True, True]

    again = await reserve_all(harness.broker, queue)
    assert [h.job.id for h in again] == [job.id for job in jobs] + [late.id]
    assert [h.job.attempts for h in again] == [1, 1, 2, 1, 1, 1]


async def test_settle_with_a_stale_token_changes_nothing(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    forged = Outcome(job_id=held.job.id, token="not-the-token", kind=OutcomeKind.COMPLETE)
    spaced = Outcome(job_id=held.job.id, token="a b|c d 1 0", kind=OutcomeKind.COMPLETE)
    unknown = Outcome(job_id=uuid.uuid4().hex, token=held.token, kind=OutcomeKind.COMPLETE)

    assert await harness.broker.settle([forged, spaced, unknown]) == [False, False, False]

    job = await harness.broker.get(held.job.id)
    assert job is not None
    assert (job.status, job.attempts, job.result) == (JobStatus.RUNNING, 1, None)
    assert await harness.broker.extend([held], lease=LONG) == [LeaseState.HELD]


async def test_a_lease_settles_only_once(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)

    first = await harness.broker.settle([outcome(held, OutcomeKind.RETRY, delay=0.0)])
    second = await harness.broker.settle([outcome(held, OutcomeKind.FAIL, error="late")])

    assert (first, second) == ([True], [False])
    job = await harness.broker.get(held.job.id)
    assert job is not None
    assert job.status is not JobStatus.FAILED
    assert job.error is None


@pytest.mark.parametrize(
    "kind",
    list(OutcomeKind),
)
async def test_a_settle_sent_again_is_answered_applied_and_changes_nothing(
    harness: BrokerHarness, kind: OutcomeKind
) -> None:
    # A worker whose settle reply was lost sends the same batch again: the broker must say the
    # outcome applied (it did, on the first try), not that the lease passed to another worker.
    queue = new_queue()
    held = await running(harness.broker, queue)
    once = outcome(held, kind, delay=0.0)
    assert await harness.broker.settle([once]) == [True]
    after_first = await harness.broker.get(held.job.id)
    stats = await harness.broker.stats([queue])

    assert await harness.broker.settle([once, outcome(held, OutcomeKind.FAIL)]) == [
        True,
        kind is OutcomeKind.FAIL,
    ]

    assert await harness.broker.get(held.job.id) == after_first
    assert await harness.broker.stats([queue]) == stats
    ready = await reserve_all(harness.broker, queue)
    assert len(ready) == (1 if kind in (OutcomeKind.RETRY, OutcomeKind.RELEASE) else 0)


async def test_a_settle_sent_again_after_the_job_was_leased_anew_is_stale(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    released = outcome(held, OutcomeKind.RELEASE)
    assert await harness.broker.settle([released]) == [True]
    [again] = await reserve_all(harness.broker, queue)

    assert await harness.broker.settle([released]) == [False]
    assert await harness.broker.extend([again], lease=LONG) == [LeaseState.HELD]


async def test_settle_applies_each_outcome_of_a_batch(harness: BrokerHarness) -> None:
    queue = new_queue()
    await harness.broker.enqueue([make_job(queue), make_job(queue)])
    first, second = await reserve_all(harness.broker, queue)
    stale = Outcome(job_id=second.job.id, token="stale", kind=OutcomeKind.FAIL)

    applied = await harness.broker.settle(
        [outcome(first, OutcomeKind.COMPLETE), stale, outcome(second, OutcomeKind.CANCEL)]
    )

    assert applied == [True, False, True]
    assert await status_of(harness.broker, first.job.id) is JobStatus.COMPLETED
    assert await status_of(harness.broker, second.job.id) is JobStatus.CANCELLED


# -- reclaim -----------------------------------------------------------------------------------
async def test_reclaim_takes_over_an_expired_lease_under_a_new_token(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue, lease=LEASE)
    await harness.advance(PAST_LEASE)

    [taken] = await harness.broker.reclaim([queue], lease=LONG)

    assert taken.job.id == held.job.id
    assert taken.token
    assert taken.token != held.token
    assert taken.job.attempts == 1
    assert taken.job.status is JobStatus.RUNNING
    assert taken.deadline > held.deadline
    # The old token is dead from here on.
    assert await harness.broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [False]
    assert await harness.broker.extend([held], lease=LONG) == [LeaseState.LOST]
    assert await harness.broker.extend([taken], lease=LONG) == [LeaseState.HELD]
    # The new holder decides: retry, and the job runs again as its second attempt.
    assert await harness.broker.settle([outcome(taken, OutcomeKind.RETRY)]) == [True]
    [again] = await reserve_all(harness.broker, queue)
    assert again.job.attempts == 2


async def test_reclaim_can_dead_letter_a_job(harness: BrokerHarness) -> None:
    queue = new_queue()
    await running(harness.broker, queue, lease=LEASE)
    await harness.advance(PAST_LEASE)
    [taken] = await harness.broker.reclaim([queue], lease=LONG)

    dead = outcome(taken, OutcomeKind.DEAD_LETTER, error="lease expired")
    assert await harness.broker.settle([dead]) == [True]

    assert [job.id for job in await harness.broker.dead_letters(queue)] == [taken.job.id]


async def test_reclaim_leaves_leases_that_have_not_expired(harness: BrokerHarness) -> None:
    queue = new_queue()
    await running(harness.broker, queue, lease=LONG)
    extended = await running(harness.broker, queue, lease=LEASE)
    assert await harness.broker.extend([extended], lease=LONG) == [LeaseState.HELD]
    await harness.advance(PAST_LEASE)

    assert await harness.broker.reclaim([queue], lease=LONG) == []


async def test_reclaim_ignores_settled_jobs_and_other_queues(harness: BrokerHarness) -> None:
    queue, other = new_queue(), new_queue()
    settled = await running(harness.broker, queue, lease=LEASE)
    await harness.broker.settle([outcome(settled, OutcomeKind.COMPLETE)])
    elsewhere = await running(harness.broker, other, lease=LEASE)
    await harness.advance(PAST_LEASE)

    assert await harness.broker.reclaim([queue], lease=LONG) == []
    assert [lease.job.id for lease in await harness.broker.reclaim([other], lease=LONG)] == [
        elsewhere.job.id
    ]


async def test_reclaim_returns_at_most_limit_leases(harness: BrokerHarness) -> None:
    queue = new_queue()
    await harness.broker.enqueue([make_job(queue) for _ in range(3)])
    await harness.broker.reserve([queue], count=3, lease=LEASE, timeout=0)
    await harness.advance(PAST_LEASE)

    first = await harness.broker.reclaim([queue], lease=LONG, limit=2)
    second = await harness.broker.reclaim([queue], lease=LONG, limit=2)

    assert (len(first), len(second)) == (2, 1)
    assert len({lease.job.id for lease in first + second}) == 3
    assert await harness.broker.reclaim([queue], lease=LONG) == []


async def test_a_reclaimed_lease_that_expires_is_reclaimed_again(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue, lease=LEASE)
    await harness.advance(PAST_LEASE)
    [first] = await harness.broker.reclaim([queue], lease=LEASE)
    await harness.advance(PAST_LEASE)

    [second] = await harness.broker.reclaim([queue], lease=LONG)

    assert first.job.id == second.job.id == held.job.id
    assert len({held.token, first.token, second.token}) == 3
    assert second.job.attempts == 1
    assert await harness.broker.settle([outcome(first, OutcomeKind.RETRY)]) == [False]


async def test_reclaim_of_a_job_whose_cancel_was_requested_cancels_it(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue, lease=LEASE)
    assert await harness.broker.cancel(held.job.id) is True
    await harness.advance(PAST_LEASE)

    assert await harness.broker.reclaim([queue], lease=LONG) == []

    assert await status_of(harness.broker, held.job.id) is JobStatus.CANCELLED
    assert await harness.broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [False]
    assert await reserve_all(harness.broker, queue) == []
