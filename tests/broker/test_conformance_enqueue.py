"""Broker conformance: enqueue, delays, unique ids and ``get``.

Runs unchanged against every broker kind (see ``conftest.py``): it asserts only what
``taskit.broker.base.Broker`` promises and lets time pass only through ``harness.advance``.
"""

from __future__ import annotations

import uuid

import pytest

from taskit.broker.base import Broker
from taskit.errors import SerializationError
from taskit.job import (
    JobResult,
    JobStatus,
    Outcome,
    OutcomeKind,
    QueueStats,
    utc_from_timestamp,
)
from tests.broker._helpers import LONG, make_job, new_queue
from tests.broker._sharded import shard_id
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

DELAY = 0.3
PAST_DELAY = 0.4


async def broker_now(broker: Broker) -> float:
    """The broker's clock, read through the contract: a lease's deadline is now + lease."""
    probe = new_queue()
    await broker.enqueue([make_job(probe)])
    [lease] = await broker.reserve([probe], count=1, lease=LONG, timeout=0)
    await broker.settle(
        [Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE)]
    )
    return lease.deadline - LONG


async def reserved_ids(broker: Broker, queue: str, count: int = 10) -> list[str]:
    leases = await broker.reserve([queue], count=count, lease=LONG, timeout=0)
    return [lease.job.id for lease in leases]


async def test_enqueue_returns_the_stored_jobs_pending(harness: BrokerHarness) -> None:
    queue = new_queue()
    first = make_job(queue, 1, "two", flag=True, metadata={"trace": "abc"})
    second = make_job(queue)

    stored = await harness.broker.enqueue([first, second])

    assert [job.id for job in stored] == [first.id, second.id]
    assert [job.status for job in stored] == [JobStatus.PENDING, JobStatus.PENDING]
    assert stored[0].attempts == 0
    assert stored[0].args == (1, "two")
    assert stored[0].kwargs == {"flag": True}
    assert stored[0].metadata == {"trace": "abc"}
    fetched = await harness.broker.get(first.id)
    assert fetched is not None
    assert fetched.status is JobStatus.PENDING
    assert (fetched.task, fetched.queue, fetched.args) == ("tests.noop", queue, (1, "two"))


async def test_enqueue_of_nothing_returns_nothing(harness: BrokerHarness) -> None:
    assert await harness.broker.enqueue([]) == []


async def test_get_of_an_unknown_id_is_none(harness: BrokerHarness) -> None:
    assert await harness.broker.get(f"missing-{uuid.uuid4().hex}") is None


async def test_a_delayed_job_is_scheduled_and_not_reservable_before_its_delay(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    ready, delayed = make_job(queue), make_job(queue)

    stored = await harness.broker.enqueue([ready, delayed], delays=[0.0, DELAY])

    assert [job.status for job in stored] == [JobStatus.PENDING, JobStatus.SCHEDULED]
    assert stored[1].scheduled_at is not None
    fetched = await harness.broker.get(delayed.id)
    assert fetched is not None
    assert fetched.status is JobStatus.SCHEDULED
    assert await reserved_ids(harness.broker, queue) == [ready.id]


async def test_a_delayed_job_becomes_reservable_once_due(harness: BrokerHarness) -> None:
    queue = new_queue()
    [job] = await harness.broker.enqueue([make_job(queue)], delays=[DELAY])
    assert await reserved_ids(harness.broker, queue) == []

    await harness.advance(PAST_DELAY)

    leases = await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0)
    assert [lease.job.id for lease in leases] == [job.id]
    assert leases[0].job.status is JobStatus.RUNNING


async def test_scheduled_at_reflects_the_delay(harness: BrokerHarness) -> None:
    queue = new_queue()
    soon, later = await harness.broker.enqueue(
        [make_job(queue), make_job(queue)], delays=[DELAY, 10.0]
    )

    assert soon.scheduled_at is not None
    assert later.scheduled_at is not None
    gap = (later.scheduled_at - soon.scheduled_at).total_seconds()
    assert gap == pytest.approx(10.0 - DELAY, abs=0.5)


async def test_a_future_scheduled_at_makes_a_job_scheduled_until_then(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    now = await broker_now(harness.broker)
    job = make_job(queue, scheduled_at=utc_from_timestamp(now + DELAY))

    [stored] = await harness.broker.enqueue([job])

    assert stored.status is JobStatus.SCHEDULED
    assert await reserved_ids(harness.broker, queue) == []
    await harness.advance(PAST_DELAY)
    assert await reserved_ids(harness.broker, queue) == [job.id]


async def test_a_past_scheduled_at_makes_a_job_pending(harness: BrokerHarness) -> None:
    queue = new_queue()
    now = await broker_now(harness.broker)
    job = make_job(queue, scheduled_at=utc_from_timestamp(now - 60.0))

    [stored] = await harness.broker.enqueue([job])

    assert stored.status is JobStatus.PENDING
    assert await reserved_ids(harness.broker, queue) == [job.id]


async def test_a_job_is_due_at_the_later_of_scheduled_at_and_delay(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    now = await broker_now(harness.broker)
    # The delay (0.4 s) outlasts scheduled_at (0.1 s): the delay wins.
    by_delay = make_job(queue, scheduled_at=utc_from_timestamp(now + 0.1))
    # scheduled_at (0.4 s) outlasts the zero delay: scheduled_at wins.
    by_time = make_job(queue, scheduled_at=utc_from_timestamp(now + 0.4))

    await harness.broker.enqueue([by_delay, by_time], delays=[0.4, 0.0])

    await harness.advance(0.2)
    assert await reserved_ids(harness.broker, queue) == []
    await harness.advance(0.3)
    assert sorted(await reserved_ids(harness.broker, queue)) == sorted([by_delay.id, by_time.id])


async def test_enqueue_stores_nothing_when_one_job_cannot_be_encoded(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    good = make_job(queue)
    bad = make_job(queue, metadata={"handle": object()})

    with pytest.raises(SerializationError):
        await harness.broker.enqueue([good, bad])

    assert await harness.broker.get(good.id) is None
    assert await harness.broker.get(bad.id) is None
    assert (await harness.broker.stats([queue]))[queue] == QueueStats()
    assert await reserved_ids(harness.broker, queue) == []


async def test_reenqueueing_an_unfinished_id_returns_the_existing_job(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    original = make_job(queue, "first")
    await harness.broker.enqueue([original])

    [again] = await harness.broker.enqueue([make_job(queue, "second", job_id=original.id)])

    assert again.id == original.id
    assert again.args == ("first",)
    assert (await harness.broker.stats([queue]))[queue].queued == 1
    assert await reserved_ids(harness.broker, queue) == [original.id]
    assert await reserved_ids(harness.broker, queue) == []


async def test_one_id_twice_in_one_batch_is_stored_once(harness: BrokerHarness) -> None:
    queue = new_queue()
    first = make_job(queue, "first", job_id=shard_id(harness.broker))
    before, twin, after = (
        make_job(queue, "before", job_id=shard_id(harness.broker)),
        make_job(queue, "twin", job_id=first.id),
        (make_job(queue, "after", job_id=shard_id(harness.broker))),
    )

    stored = await harness.broker.enqueue([before, first, twin, after])

    assert [job.id for job in stored] == [before.id, first.id, first.id, after.id]
    assert stored[2].args == ("first",)  # the twin got the job stored just before it
    assert (await harness.broker.stats([queue]))[queue].queued == 3
    assert await reserved_ids(harness.broker, queue) == [before.id, first.id, after.id]


async def test_reenqueueing_a_scheduled_id_keeps_it_scheduled(harness: BrokerHarness) -> None:
    queue = new_queue()
    original = make_job(queue, "first")
    await harness.broker.enqueue([original], delays=[LONG])

    [again] = await harness.broker.enqueue([make_job(queue, "second", job_id=original.id)])

    assert again.status is JobStatus.SCHEDULED
    assert again.args == ("first",)
    assert await reserved_ids(harness.broker, queue) == []


async def test_reenqueueing_a_running_id_enqueues_nothing(harness: BrokerHarness) -> None:
    queue = new_queue()
    original = make_job(queue)
    await harness.broker.enqueue([original])
    [lease] = await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0)

    [again] = await harness.broker.enqueue([make_job(queue, job_id=original.id)])

    assert again.status is JobStatus.RUNNING
    assert await reserved_ids(harness.broker, queue) == []
    stats = (await harness.broker.stats([queue]))[queue]
    assert (stats.queued, stats.running) == (0, 1)
    outcome = Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE)
    assert await harness.broker.settle([outcome]) == [True]


async def test_reenqueueing_a_dead_letter_into_another_queue_replaces_it(
    harness: BrokerHarness,
) -> None:
    first, second = new_queue(), new_queue()
    original = make_job(first, "first")
    await harness.broker.enqueue([original])
    [lease] = await harness.broker.reserve([first], count=1, lease=LONG, timeout=0)
    dead = Outcome(job_id=original.id, token=lease.token, kind=OutcomeKind.DEAD_LETTER)
    assert await harness.broker.settle([dead]) == [True]
    assert [letter.id for letter in await harness.broker.dead_letters(first)] == [original.id]

    [again] = await harness.broker.enqueue([make_job(second, "second", job_id=original.id)])

    assert (again.status, again.queue, again.args) == (JobStatus.PENDING, second, ("second",))
    assert await harness.broker.dead_letters(first) == []
    assert await reserved_ids(harness.broker, first) == []
    assert await reserved_ids(harness.broker, second) == [original.id]


async def test_reenqueueing_a_finished_id_replaces_it(harness: BrokerHarness) -> None:
    queue = new_queue()
    original = make_job(queue, "first")
    await harness.broker.enqueue([original])
    [lease] = await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0)
    done = Outcome(
        job_id=lease.job.id,
        token=lease.token,
        kind=OutcomeKind.COMPLETE,
        result=JobResult(success=True, value=1),
    )
    assert await harness.broker.settle([done]) == [True]

    [again] = await harness.broker.enqueue([make_job(queue, "second", job_id=original.id)])

    assert again.status is JobStatus.PENDING
    assert again.attempts == 0
    assert again.args == ("second",)
    assert again.result is None
    leases = await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0)
    assert [(lease.job.id, lease.job.args) for lease in leases] == [(original.id, ("second",))]
