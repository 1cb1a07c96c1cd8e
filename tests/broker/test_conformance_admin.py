"""Broker conformance: ``cancel``, dead letters, ``purge`` and ``stats``.

Runs unchanged against every broker kind; each test works on queues of its own.
"""

from __future__ import annotations

import uuid

import pytest

from taskit.broker.base import Broker
from taskit.job import (
    JobResult,
    JobStatus,
    Lease,
    LeaseState,
    Outcome,
    OutcomeKind,
    QueueStats,
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

DELAY = 0.3
PAST_DELAY = 0.4


async def dead_letter(broker: Broker, queue: str, error: str) -> Lease:
    """A job of ``queue`` dead-lettered with ``error``: of shard 0, so that dead letters of one
    test are listed in their order on a sharded broker too."""
    held = await running(broker, queue, job_id=shard_id(broker))
    settled = await broker.settle([outcome(held, OutcomeKind.DEAD_LETTER, error=error)])
    assert settled == [True]
    return held


async def queue_stats(broker: Broker, queue: str) -> QueueStats:
    return (await broker.stats([queue]))[queue]


# -- cancel ------------------------------------------------------------------------------------
async def test_cancel_of_a_pending_job_ends_it(harness: BrokerHarness) -> None:
    queue = new_queue()
    [job] = await harness.broker.enqueue([make_job(queue)])

    assert await harness.broker.cancel(job.id) is True

    assert await status_of(harness.broker, job.id) is JobStatus.CANCELLED
    assert await reserve_all(harness.broker, queue) == []
    assert (await queue_stats(harness.broker, queue)).queued == 0


async def test_cancel_of_a_scheduled_job_ends_it(harness: BrokerHarness) -> None:
    queue = new_queue()
    [job] = await harness.broker.enqueue([make_job(queue)], delays=[DELAY])

    assert await harness.broker.cancel(job.id) is True

    assert await status_of(harness.broker, job.id) is JobStatus.CANCELLED
    assert (await queue_stats(harness.broker, queue)).scheduled == 0
    await harness.advance(PAST_DELAY)
    assert await reserve_all(harness.broker, queue) == []


async def test_cancel_of_a_retrying_job_ends_it(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    await harness.broker.settle([outcome(held, OutcomeKind.RETRY, delay=DELAY)])

    assert await harness.broker.cancel(held.job.id) is True

    assert await status_of(harness.broker, held.job.id) is JobStatus.CANCELLED
    await harness.advance(PAST_DELAY)
    assert await reserve_all(harness.broker, queue) == []


async def test_cancel_of_a_running_job_is_a_request(harness: BrokerHarness) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)

    assert await harness.broker.cancel(held.job.id) is True

    # The job is not ended behind its worker's back: the worker learns of it when extending.
    assert await status_of(harness.broker, held.job.id) is JobStatus.RUNNING
    assert await harness.broker.extend([held], lease=LONG) == [LeaseState.CANCELLED]


@pytest.mark.parametrize("kind", [OutcomeKind.RETRY, OutcomeKind.RELEASE])
async def test_a_rerun_of_a_job_whose_cancel_was_requested_ends_it_cancelled(
    harness: BrokerHarness, kind: OutcomeKind
) -> None:
    queue = new_queue()
    held = await running(harness.broker, queue)
    assert await harness.broker.cancel(held.job.id) is True

    outcome = Outcome(job_id=held.job.id, token=held.token, kind=kind, error="boom")
    assert await harness.broker.settle([outcome]) == [True]

    assert await status_of(harness.broker, held.job.id) is JobStatus.CANCELLED
    assert await reserve_all(harness.broker, queue) == []


async def test_cancel_of_a_finished_job_changes_nothing(harness: BrokerHarness) -> None:
    queue = new_queue()
    done = await running(harness.broker, queue)
    result = JobResult(success=True, value="kept")
    await harness.broker.settle([outcome(done, OutcomeKind.COMPLETE, result=result)])
    dead = await dead_letter(harness.broker, queue, "boom")

    assert await harness.broker.cancel(done.job.id) is False
    assert await harness.broker.cancel(dead.job.id) is False

    job = await harness.broker.get(done.job.id)
    assert job is not None
    assert (job.status, job.result) == (JobStatus.COMPLETED, result)
    assert await status_of(harness.broker, dead.job.id) is JobStatus.DEAD_LETTER


async def test_cancel_twice_answers_false_the_second_time(harness: BrokerHarness) -> None:
    queue = new_queue()
    [job] = await harness.broker.enqueue([make_job(queue)])

    assert [await harness.broker.cancel(job.id), await harness.broker.cancel(job.id)] == [
        True,
        False,
    ]


async def test_cancel_of_an_unknown_job_answers_false(harness: BrokerHarness) -> None:
    assert await harness.broker.cancel(f"missing-{uuid.uuid4().hex}") is False


# -- dead letters ------------------------------------------------------------------------------
async def test_dead_letters_are_listed_oldest_first_with_their_errors(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    first = await dead_letter(harness.broker, queue, "first failure")
    second = await dead_letter(harness.broker, queue, "second failure")
    third = await dead_letter(harness.broker, queue, "third failure")

    letters = await harness.broker.dead_letters(queue)

    assert [(job.id, job.error) for job in letters] == [
        (first.job.id, "first failure"),
        (second.job.id, "second failure"),
        (third.job.id, "third failure"),
    ]
    page = await harness.broker.dead_letters(queue, limit=1, offset=1)
    assert [job.id for job in page] == [second.job.id]
    assert await harness.broker.dead_letters(new_queue()) == []


async def test_requeue_dead_by_id_makes_the_job_pending_again(harness: BrokerHarness) -> None:
    queue = new_queue()
    kept = await dead_letter(harness.broker, queue, "stays dead")
    revived = await dead_letter(harness.broker, queue, "comes back")

    assert await harness.broker.requeue_dead(queue, [revived.job.id, "no-such-id"]) == 1

    job = await harness.broker.get(revived.job.id)
    assert job is not None
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert [job.id for job in await harness.broker.dead_letters(queue)] == [kept.job.id]
    [again] = await reserve_all(harness.broker, queue)
    assert (again.job.id, again.job.attempts) == (revived.job.id, 1)


async def test_requeue_dead_without_ids_requeues_them_all(harness: BrokerHarness) -> None:
    queue = new_queue()
    first = await dead_letter(harness.broker, queue, "a")
    second = await dead_letter(harness.broker, queue, "b")

    assert await harness.broker.requeue_dead(queue) == 2

    assert await harness.broker.dead_letters(queue) == []
    assert (await queue_stats(harness.broker, queue)).dead == 0
    leases = await reserve_all(harness.broker, queue)
    assert sorted(lease.job.id for lease in leases) == sorted([first.job.id, second.job.id])
    assert all(lease.job.attempts == 1 for lease in leases)
    assert await harness.broker.requeue_dead(queue) == 0


async def test_purge_dead_deletes_the_dead_letters(harness: BrokerHarness) -> None:
    queue = new_queue()
    first = await dead_letter(harness.broker, queue, "a")
    await dead_letter(harness.broker, queue, "b")
    pending = make_job(queue)
    await harness.broker.enqueue([pending])

    assert await harness.broker.purge_dead(queue) == 2

    assert await harness.broker.dead_letters(queue) == []
    assert await harness.broker.get(first.job.id) is None
    assert await status_of(harness.broker, pending.id) is JobStatus.PENDING
    assert (await queue_stats(harness.broker, queue)).dead == 0
    assert await harness.broker.purge_dead(queue) == 0


# -- purge -------------------------------------------------------------------------------------
async def test_purge_deletes_waiting_jobs_but_not_running_ones(harness: BrokerHarness) -> None:
    queue = new_queue()
    await harness.broker.enqueue([make_job(queue), make_job(queue)])
    retrying, busy = await reserve_all(harness.broker, queue)
    await harness.broker.settle([outcome(retrying, OutcomeKind.RETRY, delay=DELAY)])
    [pending] = await harness.broker.enqueue([make_job(queue)])
    [scheduled] = await harness.broker.enqueue([make_job(queue)], delays=[DELAY])

    assert await harness.broker.purge(queue) == 3

    for job_id in (pending.id, scheduled.id, retrying.job.id):
        assert await harness.broker.get(job_id) is None
    assert await status_of(harness.broker, busy.job.id) is JobStatus.RUNNING
    await harness.advance(PAST_DELAY)
    assert await reserve_all(harness.broker, queue) == []
    assert await harness.broker.settle([outcome(busy, OutcomeKind.COMPLETE)]) == [True]
    stats = await queue_stats(harness.broker, queue)
    assert (stats.queued, stats.scheduled, stats.running, stats.completed) == (0, 0, 0, 1)


async def test_purge_leaves_other_queues_alone(harness: BrokerHarness) -> None:
    queue, other = new_queue(), new_queue()
    [kept] = await harness.broker.enqueue([make_job(other)])

    assert await harness.broker.purge(queue) == 0

    assert await status_of(harness.broker, kept.id) is JobStatus.PENDING


# -- stats -------------------------------------------------------------------------------------
async def test_stats_follow_jobs_through_their_lives(harness: BrokerHarness) -> None:
    broker = harness.broker
    queue = new_queue()
    [first] = await broker.enqueue([make_job(queue)])
    [second] = await broker.enqueue([make_job(queue)], delays=[DELAY])
    assert await queue_stats(broker, queue) == QueueStats(queued=1, scheduled=1)

    [held] = await reserve_all(broker, queue)
    assert held.job.id == first.id
    assert await queue_stats(broker, queue) == QueueStats(scheduled=1, running=1)

    await broker.settle([outcome(held, OutcomeKind.COMPLETE)])
    assert await queue_stats(broker, queue) == QueueStats(scheduled=1, completed=1)

    await harness.advance(PAST_DELAY)
    [held] = await reserve_all(broker, queue)
    assert held.job.id == second.id
    assert await queue_stats(broker, queue) == QueueStats(running=1, completed=1)

    await broker.settle([outcome(held, OutcomeKind.RETRY, delay=DELAY)])
    assert await queue_stats(broker, queue) == QueueStats(scheduled=1, completed=1)

    await harness.advance(PAST_DELAY)
    [held] = await reserve_all(broker, queue)
    await broker.settle([outcome(held, OutcomeKind.FAIL, error="no")])
    assert await queue_stats(broker, queue) == QueueStats(completed=1, failed=1)

    await dead_letter(broker, queue, "gone")
    assert await queue_stats(broker, queue) == QueueStats(completed=1, failed=1, dead=1)


async def test_stats_without_queues_covers_every_known_queue(harness: BrokerHarness) -> None:
    queue, other = new_queue(), new_queue()
    await harness.broker.enqueue([make_job(queue), make_job(queue), make_job(other)])

    stats = await harness.broker.stats()

    assert stats[queue].queued == 2
    assert stats[other].queued == 1


async def test_stats_of_a_queue_never_used_is_empty(harness: BrokerHarness) -> None:
    queue = new_queue()

    assert await harness.broker.stats([queue]) == {queue: QueueStats()}
