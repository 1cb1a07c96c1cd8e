"""Broker conformance: dedup windows (``Job.dedup``, ``taskit.dedup``) in ``enqueue``.

Throttle keeps the first job of a key for its window and answers later ones with it; debounce
keeps the last: a job enqueued while its key's job still waits gives that job its arguments and
pushes its start back. Both are decided in the enqueue's own atomic step: two producers at once
make one job.
"""

from __future__ import annotations

import anyio
import msgspec
import pytest

from taskit.broker.placement import HOME
from taskit.dedup import Dedup
from taskit.job import Job, JobStatus, KeptJob, OutcomeKind
from tests.broker._helpers import make_job, new_queue, outcome, reserve_all
from tests.broker._sharded import shard_id
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

WINDOW = 0.25


def throttled(queue: str, *args: object, key: str = "k", window: float = WINDOW) -> Job:
    return msgspec.structs.replace(make_job(queue, *args), dedup=Dedup("throttle", key, window))


def debounced(queue: str, *args: object, key: str = "k", window: float = WINDOW) -> Job:
    return msgspec.structs.replace(make_job(queue, *args), dedup=Dedup("debounce", key, window))


async def queued(harness: BrokerHarness, queue: str) -> tuple[int, int]:
    stats = (await harness.broker.stats([queue]))[queue]
    return stats.queued, stats.scheduled


# -- throttle ------------------------------------------------------------------------------------
async def test_a_throttle_keeps_the_first_job_of_a_key_for_its_window(
    harness: BrokerHarness,
) -> None:
    broker, queue, key = harness.broker, new_queue(), new_queue()
    [first] = await broker.enqueue([throttled(queue, 1, key=key)])
    [again] = await broker.enqueue([throttled(queue, 2, key=key)])
    [other] = await broker.enqueue([throttled(queue, 3, key=key + "-other")])

    assert not first.duplicate
    assert not other.duplicate
    assert isinstance(again, KeptJob)
    assert again.duplicate
    assert (again.id, again.args) == (first.id, (1,))
    assert await queued(harness, queue) == (2, 0)

    await harness.advance(WINDOW + 0.1)  # the window is over: a new job is kept
    [later] = await broker.enqueue([throttled(queue, 4, key=key)])
    assert not later.duplicate
    assert later.id != first.id
    assert await queued(harness, queue) == (3, 0)


async def test_a_throttle_answers_its_kept_job_after_it_finished(harness: BrokerHarness) -> None:
    broker, queue, key = harness.broker, new_queue(), new_queue()
    [first] = await broker.enqueue([throttled(queue, 1, key=key, window=30.0)])
    [held] = await reserve_all(broker, queue)
    await broker.settle([outcome(held, OutcomeKind.COMPLETE)])

    [again] = await broker.enqueue([throttled(queue, 2, key=key, window=30.0)])

    assert again.duplicate
    assert (again.id, again.status) == (first.id, JobStatus.COMPLETED)
    assert await queued(harness, queue) == (0, 0)


async def test_a_throttle_in_one_batch_keeps_the_first(harness: BrokerHarness) -> None:
    broker, queue, key = harness.broker, new_queue(), new_queue()

    first, second, plain = await broker.enqueue(
        [throttled(queue, 1, key=key), throttled(queue, 2, key=key), make_job(queue, 3)]
    )

    assert [first.duplicate, second.duplicate, plain.duplicate] == [False, True, False]
    assert second.id == first.id
    assert await queued(harness, queue) == (2, 0)


async def test_two_producers_at_once_make_one_throttled_job(harness: BrokerHarness) -> None:
    broker, queue, key = harness.broker, new_queue(), new_queue()
    answers: list[Job] = []

    async def produce(n: int) -> None:
        answers.extend(await broker.enqueue([throttled(queue, n, key=key, window=30.0)]))

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(produce, n)

    assert len({job.id for job in answers}) == 1
    assert sum(not job.duplicate for job in answers) == 1
    assert await queued(harness, queue) == (1, 0)


async def test_a_unique_id_wins_over_the_window(harness: BrokerHarness) -> None:
    """Unique until finished: an id already waiting is kept as it is, dedup or not (on a
    sharded broker: within a shard, so the id is one of the home shard, where a dedup window
    places its job; across shards see test_conformance_shards.py)."""
    broker, queue, key = harness.broker, new_queue(), shard_id(harness.broker, shard=HOME)
    [first] = await broker.enqueue([make_job(queue, 1, job_id=key)])

    [again] = await broker.enqueue(
        [msgspec.structs.replace(throttled(queue, 2, key=key), id=first.id)]
    )

    assert again.duplicate
    assert (again.id, again.args) == (first.id, (1,))


# -- debounce ------------------------------------------------------------------------------------
async def test_a_debounce_keeps_the_last_arguments_and_pushes_the_start(
    harness: BrokerHarness,
) -> None:
    broker, queue, key = harness.broker, new_queue(), new_queue()
    [first] = await broker.enqueue([debounced(queue, 1, key=key)])
    assert first.status is JobStatus.SCHEDULED  # it waits its window
    assert first.scheduled_at is not None

    await harness.advance(WINDOW / 2)
    [again] = await broker.enqueue([debounced(queue, 2, key=key)])

    assert again.duplicate
    assert again.id == first.id
    assert again.args == (2,)  # the last arguments win
    assert again.scheduled_at is not None
    assert again.scheduled_at > first.scheduled_at
    assert await queued(harness, queue) == (0, 1)
    await harness.advance(WINDOW / 2 + 0.05)  # the first window's end: not due any more
    assert await reserve_all(broker, queue) == []

    await harness.advance(WINDOW / 2 + 0.05)
    [held] = await reserve_all(broker, queue)
    assert (held.job.id, held.job.args) == (first.id, (2,))


async def test_a_debounced_job_that_started_is_left_alone(harness: BrokerHarness) -> None:
    broker, queue, key = harness.broker, new_queue(), new_queue()
    [first] = await broker.enqueue([debounced(queue, 1, key=key, window=0.2)])
    await harness.advance(0.3)
    [held] = await reserve_all(broker, queue)

    [later] = await broker.enqueue([debounced(queue, 2, key=key, window=0.2)])

    assert not later.duplicate
    assert later.id != first.id
    assert later.status is JobStatus.SCHEDULED
    assert held.job.args == (1,)


async def test_a_debounce_in_one_batch_keeps_the_last(harness: BrokerHarness) -> None:
    broker, queue, key = harness.broker, new_queue(), new_queue()

    first, second = await broker.enqueue(
        [debounced(queue, 1, key=key), debounced(queue, 2, key=key)]
    )

    assert [first.duplicate, second.duplicate] == [False, True]
    assert second.id == first.id
    assert second.args == (2,)
    assert (await broker.get(first.id)).args == (2,)  # type: ignore[union-attr]
    assert await queued(harness, queue) == (0, 1)


async def test_a_debounce_of_another_queue_makes_its_own_job(harness: BrokerHarness) -> None:
    broker, key = harness.broker, new_queue()
    [first] = await broker.enqueue([debounced(new_queue(), 1, key=key)])

    [other] = await broker.enqueue([debounced(new_queue(), 2, key=key)])

    assert not other.duplicate
    assert other.id != first.id


async def test_two_producers_at_once_make_one_debounced_job(harness: BrokerHarness) -> None:
    broker, queue, key = harness.broker, new_queue(), new_queue()
    answers: list[Job] = []

    async def produce(n: int) -> None:
        answers.extend(await broker.enqueue([debounced(queue, n, key=key, window=30.0)]))

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(produce, n)

    assert len({job.id for job in answers}) == 1
    assert sum(not job.duplicate for job in answers) == 1
    assert await queued(harness, queue) == (0, 1)
    stored = await broker.get(answers[0].id)
    assert stored is not None
    assert stored.args == answers[-1].args
