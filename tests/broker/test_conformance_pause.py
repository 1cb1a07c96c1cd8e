"""Broker conformance: paused queues (``pause_queue``, ``resume_queue``, ``paused_queues``).

A paused queue hands out nothing while its jobs wait (delayed ones fall due and wait too), its
expired leases are still reclaimed, a reserve blocked on it is not handed its jobs, and resuming
wakes that reserve at once.
"""

from __future__ import annotations

import anyio
import pytest

from taskit.job import Lease
from tests.broker._helpers import LONG, make_job, new_queue, reserve_all
from tests.broker._sharded import shard_id
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

#: A blocking reserve that is never meant to run out; the test fails long before it would.
BLOCK = 10.0
#: How long a woken reserve may take to return: far less than BLOCK.
PROMPT = 3.0


async def test_a_paused_queue_hands_out_nothing_until_resumed(harness: BrokerHarness) -> None:
    broker, queue = harness.broker, new_queue()
    jobs = await broker.enqueue([make_job(queue, i, job_id=shard_id(broker)) for i in range(3)])

    assert await broker.pause_queue(queue) is True
    assert await broker.pause_queue(queue) is False  # already paused
    assert queue in await broker.paused_queues()
    assert await reserve_all(broker, queue) == []
    assert (await broker.stats([queue]))[queue].queued == 3  # they wait: nothing is lost

    assert await broker.resume_queue(queue) is True
    assert await broker.resume_queue(queue) is False  # not paused any more
    assert queue not in await broker.paused_queues()
    assert [lease.job.id for lease in await reserve_all(broker, queue)] == [j.id for j in jobs]


async def test_pausing_one_queue_leaves_the_others_served(harness: BrokerHarness) -> None:
    broker, paused, other = harness.broker, new_queue(), new_queue()
    await broker.enqueue([make_job(paused)])
    [job] = await broker.enqueue([make_job(other)])
    await broker.pause_queue(paused)

    leases = await broker.reserve([paused, other], count=10, lease=LONG, timeout=0)

    assert [lease.job.id for lease in leases] == [job.id]
    await broker.resume_queue(paused)


async def test_a_delayed_job_of_a_paused_queue_falls_due_and_waits(harness: BrokerHarness) -> None:
    broker, queue = harness.broker, new_queue()
    [job] = await broker.enqueue([make_job(queue)], delays=[0.2])
    await broker.pause_queue(queue)

    await harness.advance(0.3)

    assert await reserve_all(broker, queue) == []
    stats = (await broker.stats([queue]))[queue]
    assert (stats.queued, stats.scheduled) == (1, 0)
    await broker.resume_queue(queue)
    assert [lease.job.id for lease in await reserve_all(broker, queue)] == [job.id]


async def test_expired_leases_of_a_paused_queue_are_still_reclaimed(
    harness: BrokerHarness,
) -> None:
    broker, queue = harness.broker, new_queue()
    [job] = await broker.enqueue([make_job(queue)])
    [held] = await broker.reserve([queue], count=1, lease=0.2, timeout=0)
    await broker.pause_queue(queue)

    await harness.advance(0.3)
    reclaimed = await broker.reclaim([queue], lease=LONG)

    assert [lease.job.id for lease in reclaimed] == [job.id]
    assert reclaimed[0].token != held.token
    await broker.resume_queue(queue)


async def test_resume_wakes_a_reserve_blocked_on_the_paused_queue(harness: BrokerHarness) -> None:
    broker, queue = harness.broker, new_queue()
    await broker.pause_queue(queue)
    [job] = await broker.enqueue([make_job(queue)])  # its wake-up finds the queue paused
    got: list[Lease] = []

    async def consume() -> None:
        got.extend(await broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK))

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            resumed = anyio.current_time()
            assert await broker.resume_queue(queue) is True
        waited = anyio.current_time() - resumed

    assert [lease.job.id for lease in got] == [job.id]
    assert waited < PROMPT


async def test_a_blocked_reserve_is_not_handed_jobs_enqueued_to_a_paused_queue(
    harness: BrokerHarness,
) -> None:
    broker, queue = harness.broker, new_queue()
    await broker.pause_queue(queue)
    got: list[Lease] = []

    async def consume() -> None:
        got.extend(await broker.reserve([queue], count=1, lease=LONG, timeout=0.25))

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            await broker.enqueue([make_job(queue)])  # wakes it: it finds the queue paused

    assert got == []
    assert (await broker.stats([queue]))[queue].queued == 1
    await broker.resume_queue(queue)


async def test_a_blank_queue_name_is_refused(harness: BrokerHarness) -> None:
    for call in (harness.broker.pause_queue, harness.broker.resume_queue):
        with pytest.raises(ValueError, match="queue name"):
            await call(" ")
