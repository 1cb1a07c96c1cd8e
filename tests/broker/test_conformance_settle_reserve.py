"""Broker conformance: ``settle_and_reserve``, the one step a worker holding one job at a time
takes between its jobs. A broker with such a step settles as ``settle`` does and leases as
``reserve(timeout=0)`` does; one without answers None and changes nothing (the worker then
calls the two). Every broker kind; the memory and SQLite brokers have the step. Each test runs
twice: through ``settle_and_reserve``, and through ``settle_and_reserve_now`` called from a
thread with no event loop, as a worker's chain of ``def`` jobs calls it (memory and SQLite
have it: with SQLite's write lock free, it is done at once)."""

from __future__ import annotations

import functools

import anyio.to_thread
import pytest

from taskit.broker.base import Broker
from taskit.job import Job, JobStatus, Lease, Outcome, OutcomeKind
from tests.broker._helpers import LONG, make_job, new_queue
from tests.broker._sharded import shard_id
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

#: The kinds that take both steps at once (the others answer None).
TAKES = ("memory", "sqlite")
#: The kinds that take them from any thread, at once (``settle_and_reserve_now``).
TAKES_NOW = ("memory", "sqlite")


@pytest.fixture(params=[False, True], ids=["on-the-loop", "now-in-a-thread"])
def now(request: pytest.FixtureRequest) -> bool:
    """Whether the step is ``settle_and_reserve_now`` called from a thread."""
    return bool(request.param)


def complete(lease: Lease) -> Outcome:
    return Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE)


async def queued(broker: Broker, count: int) -> tuple[str, list[Job]]:
    queue = new_queue()
    jobs = [make_job(queue, i, job_id=shard_id(broker)) for i in range(count)]
    await broker.enqueue(jobs)
    return queue, jobs


async def settle_and_reserve(
    harness: BrokerHarness, outcomes: list[Outcome], queue: str, now: bool
) -> tuple[list[bool], list[Lease]]:
    """The step's answer, one lease at most (``now``: ``settle_and_reserve_now`` in a thread).
    A kind without it must answer None and change nothing (checked: every outcome's job still
    held by its token); its worker then calls ``settle`` and ``reserve``, which this does in
    its place, so every test below holds on every kind."""
    broker = harness.broker
    if now:
        step = functools.partial(
            broker.settle_and_reserve_now, outcomes, [queue], count=1, lease=LONG
        )
        both = await anyio.to_thread.run_sync(step)
    else:
        both = await broker.settle_and_reserve(outcomes, [queue], count=1, lease=LONG)
    if harness.kind in (TAKES_NOW if now else TAKES):
        assert both is not None
        return both
    assert both is None
    for outcome in outcomes:
        stored = await broker.get(outcome.job_id)
        assert stored is not None
        assert stored.status is JobStatus.RUNNING
    applied = await broker.settle(outcomes)
    return applied, await broker.reserve([queue], count=1, lease=LONG, timeout=0)


async def status(broker: Broker, job: Job) -> tuple[JobStatus, int]:
    stored = await broker.get(job.id)
    assert stored is not None
    return stored.status, stored.attempts


async def test_it_settles_the_outcome_and_leases_the_next_job(
    harness: BrokerHarness, now: bool
) -> None:
    broker = harness.broker
    queue, (first, second, third) = await queued(broker, 3)
    (held,) = await broker.reserve([queue], count=1, lease=LONG, timeout=0)

    applied, leases = await settle_and_reserve(harness, [complete(held)], queue, now)

    assert applied == [True]
    assert [lease.job.id for lease in leases] == [second.id]
    assert leases[0].job.status is JobStatus.RUNNING
    assert leases[0].job.attempts == 1
    assert await status(broker, first) == (JobStatus.COMPLETED, 1)
    assert await status(broker, second) == (JobStatus.RUNNING, 1)
    assert await status(broker, third) == (JobStatus.PENDING, 0)
    assert await broker.settle([complete(leases[0])]) == [True]  # the lease is a real one


async def test_a_stale_outcome_is_answered_false_and_the_next_job_still_taken(
    harness: BrokerHarness, now: bool
) -> None:
    broker = harness.broker
    queue, (first, second) = await queued(broker, 2)
    (_held,) = await broker.reserve([queue], count=1, lease=LONG, timeout=0)
    (other,) = await broker.reserve([queue], count=1, lease=LONG, timeout=0)
    await broker.settle([complete(other)])
    stale = Outcome(job_id=second.id, token=other.token, kind=OutcomeKind.FAIL)  # settled

    if harness.kind in (TAKES_NOW if now else TAKES):
        assert await settle_and_reserve(harness, [stale], queue, now) == ([False], [])
    elif now:
        step = functools.partial(
            broker.settle_and_reserve_now, [stale], [queue], count=1, lease=LONG
        )
        assert await anyio.to_thread.run_sync(step) is None
    else:
        assert await broker.settle_and_reserve([stale], [queue], count=1, lease=LONG) is None
    assert await status(broker, first) == (JobStatus.RUNNING, 1)  # untouched
    assert await status(broker, second) == (JobStatus.COMPLETED, 1)


async def test_nothing_ready_takes_nothing_and_still_settles(
    harness: BrokerHarness, now: bool
) -> None:
    broker = harness.broker
    queue, (only,) = await queued(broker, 1)
    (held,) = await broker.reserve([queue], count=1, lease=LONG, timeout=0)

    assert await settle_and_reserve(harness, [complete(held)], queue, now) == ([True], [])
    assert await status(broker, only) == (JobStatus.COMPLETED, 1)


async def test_a_paused_queue_is_not_taken_from(harness: BrokerHarness, now: bool) -> None:
    broker = harness.broker
    queue, (first, second) = await queued(broker, 2)
    (held,) = await broker.reserve([queue], count=1, lease=LONG, timeout=0)
    await broker.pause_queue(queue)

    assert await settle_and_reserve(harness, [complete(held)], queue, now) == ([True], [])
    assert await status(broker, first) == (JobStatus.COMPLETED, 1)
    assert await status(broker, second) == (JobStatus.PENDING, 0)


async def test_a_released_job_goes_to_the_front_and_is_the_one_taken(
    harness: BrokerHarness, now: bool
) -> None:
    """A RELEASE makes its job ready at the front of its queue in the same step, so the take
    that follows leases it again, not the job behind it."""
    broker = harness.broker
    queue, (first, second) = await queued(broker, 2)
    (held,) = await broker.reserve([queue], count=1, lease=LONG, timeout=0)
    release = Outcome(job_id=first.id, token=held.token, kind=OutcomeKind.RELEASE)

    applied, leases = await settle_and_reserve(harness, [release], queue, now)

    assert applied == [True]
    assert [lease.job.id for lease in leases] == [first.id]
    assert leases[0].token != held.token
    assert leases[0].job.attempts == 1  # the released attempt was refunded
    assert await status(broker, second) == (JobStatus.PENDING, 0)


@pytest.mark.parametrize("count", [0, -1])
async def test_a_count_below_one_is_refused(harness: BrokerHarness, count: int) -> None:
    broker = harness.broker
    queue, (first,) = await queued(broker, 1)
    (held,) = await broker.reserve([queue], count=1, lease=LONG, timeout=0)

    with pytest.raises(ValueError, match="count must be >= 1"):
        await broker.settle_and_reserve([complete(held)], [queue], count=count, lease=LONG)
    with pytest.raises(ValueError, match="count must be >= 1"):
        broker.settle_and_reserve_now([complete(held)], [queue], count=count, lease=LONG)
    assert await status(broker, first) == (JobStatus.RUNNING, 1)  # nothing settled
