"""Broker conformance: ``reserve`` ordering, limits, leases and blocking waits.

Runs unchanged against every broker kind: only the promises of ``taskit.broker.base.Broker``
are asserted, and waits are bounded by generous real-time limits, never used to synchronise.
The tests of an order take ids of one shard (``shard_id``): a sharded broker keeps its orders
within a shard (what holds across shards: test_conformance_shards.py).
"""

from __future__ import annotations

import anyio
import pytest

from taskit.broker.base import Broker
from taskit.job import JobStatus, Lease
from tests.broker._helpers import LONG, make_job, new_queue
from tests.broker._sharded import shard_id
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

DELAY = 0.3
PAST_DELAY = 0.4
#: A blocking reserve that is never meant to run out; the test fails long before it would.
BLOCK = 10.0
#: How long a woken reserve may take to return: far less than BLOCK, generous for slow CI.
PROMPT = 3.0


async def reserve_ids(broker: Broker, queues: list[str], count: int) -> list[str]:
    leases = await broker.reserve(queues, count=count, lease=LONG, timeout=0)
    return [lease.job.id for lease in leases]


async def test_higher_priority_is_reserved_first(harness: BrokerHarness) -> None:
    queue = new_queue()
    broker = harness.broker
    low, high, mid, high_later = (
        make_job(queue, job_id=shard_id(broker), priority=0),
        make_job(queue, job_id=shard_id(broker), priority=10),
        make_job(queue, job_id=shard_id(broker), priority=5),
        make_job(queue, job_id=shard_id(broker), priority=10),
    )
    for job in (low, high, mid, high_later):
        await harness.broker.enqueue([job])

    assert await reserve_ids(harness.broker, [queue], 4) == [
        high.id,
        high_later.id,
        mid.id,
        low.id,
    ]


async def test_jobs_of_equal_priority_are_reserved_in_enqueue_order(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    batch = [make_job(queue, i, job_id=shard_id(harness.broker)) for i in range(5)]
    await harness.broker.enqueue(batch)
    single = make_job(queue, 5, job_id=shard_id(harness.broker))
    await harness.broker.enqueue([single])

    first = await reserve_ids(harness.broker, [queue], 2)
    rest = await reserve_ids(harness.broker, [queue], 10)

    assert first + rest == [job.id for job in [*batch, single]]


async def test_reserve_drains_the_first_queue_before_the_second(harness: BrokerHarness) -> None:
    first_queue, second_queue = new_queue(), new_queue()
    # Priority orders jobs within a queue only: the first queue still goes first.
    a1, a2 = (make_job(first_queue, job_id=shard_id(harness.broker)) for _ in range(2))
    b1, b2 = (
        make_job(second_queue, job_id=shard_id(harness.broker), priority=100) for _ in range(2)
    )
    await harness.broker.enqueue([b1, b2, a1, a2])

    assert await reserve_ids(harness.broker, [first_queue, second_queue], 3) == [
        a1.id,
        a2.id,
        b1.id,
    ]
    assert await reserve_ids(harness.broker, [first_queue, second_queue], 3) == [b2.id]


async def test_reserve_takes_at_most_count_jobs(harness: BrokerHarness) -> None:
    queue = new_queue()
    jobs = [make_job(queue) for _ in range(3)]
    await harness.broker.enqueue(jobs)

    assert len(await reserve_ids(harness.broker, [queue], 2)) == 2
    assert len(await reserve_ids(harness.broker, [queue], 2)) == 1
    assert await reserve_ids(harness.broker, [queue], 2) == []


async def test_reserve_ignores_queues_it_was_not_asked_for(harness: BrokerHarness) -> None:
    queue, other = new_queue(), new_queue()
    await harness.broker.enqueue([make_job(other)])

    assert await reserve_ids(harness.broker, [queue], 5) == []
    assert len(await reserve_ids(harness.broker, [other], 5)) == 1


async def test_a_reserved_job_is_running_under_a_lease(harness: BrokerHarness) -> None:
    queue = new_queue()
    first = make_job(queue, 7, job_id=shard_id(harness.broker), key="v")
    second = make_job(queue, job_id=shard_id(harness.broker))
    await harness.broker.enqueue([first, second])

    leases = await harness.broker.reserve([queue], count=2, lease=LONG, timeout=0)

    lease = leases[0]
    assert lease.job.id == first.id
    assert lease.job.status is JobStatus.RUNNING
    assert lease.job.attempts == 1
    assert lease.job.started_at is not None
    assert (lease.job.args, lease.job.kwargs) == ((7,), {"key": "v"})
    assert lease.token
    assert leases[0].token != leases[1].token
    # The deadline is lease seconds after the reservation, on the broker's clock.
    assert lease.deadline > lease.job.started_at.timestamp()
    assert lease.deadline == pytest.approx(lease.job.started_at.timestamp() + LONG, abs=1.0)
    stored = await harness.broker.get(first.id)
    assert stored is not None
    assert (stored.status, stored.attempts) == (JobStatus.RUNNING, 1)


async def test_a_reserved_job_is_not_handed_out_again(harness: BrokerHarness) -> None:
    queue = new_queue()
    await harness.broker.enqueue([make_job(queue)])

    assert len(await reserve_ids(harness.broker, [queue], 1)) == 1
    assert await reserve_ids(harness.broker, [queue], 1) == []


async def test_reserve_with_zero_timeout_returns_at_once(harness: BrokerHarness) -> None:
    queue = new_queue()
    started = anyio.current_time()

    assert await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0) == []

    assert anyio.current_time() - started < PROMPT


async def test_a_blocking_reserve_gives_up_after_its_timeout(harness: BrokerHarness) -> None:
    queue = new_queue()
    started = anyio.current_time()

    with anyio.fail_after(PROMPT + 0.2):
        assert await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0.2) == []

    assert anyio.current_time() - started >= 0.1


async def test_a_blocking_reserve_wakes_when_a_job_is_enqueued(harness: BrokerHarness) -> None:
    queue = new_queue()
    got: list[Lease] = []

    async def consume() -> None:
        got.extend(await harness.broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK))

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            sent = anyio.current_time()
            [job] = await harness.broker.enqueue([make_job(queue)])
        waited = anyio.current_time() - sent

    assert [lease.job.id for lease in got] == [job.id]
    assert waited < PROMPT


async def test_a_blocking_reserve_wakes_when_a_delayed_job_falls_due(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    [job] = await harness.broker.enqueue([make_job(queue)], delays=[DELAY])
    got: list[Lease] = []

    async def consume() -> None:
        got.extend(await harness.broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK))

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            started = anyio.current_time()
            await harness.advance(PAST_DELAY)
        waited = anyio.current_time() - started

    assert [lease.job.id for lease in got] == [job.id]
    assert waited < PROMPT


async def test_one_job_wakes_one_of_several_blocked_reserves(harness: BrokerHarness) -> None:
    queue = new_queue()
    got: list[Lease] = []

    async def consume() -> None:
        got.extend(await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0.5))

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            [job] = await harness.broker.enqueue([make_job(queue)])

    assert [lease.job.id for lease in got] == [job.id]


async def test_blocked_reserves_of_different_timeouts_each_end_empty_without_error(
    harness: BrokerHarness,
) -> None:
    """Waits that share a connection (Redis: one per event loop): the one cut short first
    must not fail the others (it drops its connection under them: a wake-up for them, not an
    error); each still ends by its own timeout, or sooner, empty."""
    queue = new_queue()
    got: dict[float, list[Lease]] = {}

    async def consume(timeout: float) -> None:
        got[timeout] = await harness.broker.reserve([queue], count=1, lease=LONG, timeout=timeout)

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as tg:
            for timeout in (0.1, 0.4, 0.7):
                tg.start_soon(consume, timeout)

    assert got == {0.1: [], 0.4: [], 0.7: []}


# -- cancellation (issue 11 item 4: a stopping worker must not go on reserving) ---------------
async def test_a_reserve_in_a_cancelled_scope_raises_and_takes_nothing(
    harness: BrokerHarness,
) -> None:
    queue = new_queue()
    [job] = await harness.broker.enqueue([make_job(queue)])
    returned = False

    with anyio.CancelScope() as scope:
        scope.cancel()
        await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0)
        returned = True

    assert not returned  # the cancellation propagated: no jobs for a caller that is gone
    fetched = await harness.broker.get(job.id)
    assert fetched is not None
    assert (fetched.status, fetched.attempts) == (JobStatus.PENDING, 0)
    assert await reserve_ids(harness.broker, [queue], 1) == [job.id]  # still first in line


async def test_a_cancelled_blocking_reserve_raises_at_once(harness: BrokerHarness) -> None:
    queue = new_queue()
    started = anyio.current_time()

    with anyio.move_on_after(0.2) as scope:
        await harness.broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK)

    took = anyio.current_time() - started
    assert scope.cancelled_caught  # raised, not swallowed (a swallowed cancel loops on)
    assert took < 0.2 + PROMPT / 2
    [job] = await harness.broker.enqueue([make_job(queue)])
    assert await reserve_ids(harness.broker, [queue], 1) == [job.id]  # the broker serves on
