"""What only the memory broker promises: result expiry on its clock, threads, its own edge cases.

The shared contract is checked by ``test_conformance_*.py``; these tests build their own
``MemoryBroker`` (small ``result_ttl``, a ``FakeClock`` they move by hand).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec
import pytest

from taskit.broker import MemoryBroker, from_url
from taskit.clock import FakeClock
from taskit.errors import ConfigurationError, SerializationError
from taskit.job import (
    Job,
    JobStatus,
    Lease,
    LeaseState,
    Outcome,
    OutcomeKind,
    QueueStats,
    encode_arguments,
)

pytestmark = pytest.mark.anyio

QUEUE = "default"
LONG = 30.0
TTL = 5.0
BLOCK = 10.0
PROMPT = 3.0


def make_job(*args: Any, queue: str = QUEUE, payload: msgspec.Raw | None = None) -> Job:
    return Job(
        id=uuid.uuid4().hex,
        task="tests.noop",
        queue=queue,
        payload=encode_arguments(args, {}) if payload is None else payload,
        created_at=datetime.now(UTC),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> MemoryBroker:
    return MemoryBroker(clock=clock, result_ttl=TTL)


async def settled(broker: MemoryBroker, kind: OutcomeKind, **fields: Any) -> Lease:
    """Enqueue one job, reserve it and settle it with ``kind``."""
    await broker.enqueue([make_job()])
    [lease] = await broker.reserve([QUEUE], count=1, lease=LONG, timeout=0)
    outcome = Outcome(job_id=lease.job.id, token=lease.token, kind=kind, **fields)
    assert await broker.settle([outcome]) == [True]
    return lease


async def wait_for_job(
    broker: MemoryBroker, wake: Callable[[], Any], *, queue: str = QUEUE
) -> tuple[list[Lease], float]:
    """Block a reserve on ``queue``, run ``wake`` in a worker thread once it is blocked; return
    the leases it got and the seconds between the wake-up and its return."""
    got: list[Lease] = []

    async def consume() -> None:
        got.extend(await broker.reserve([queue], count=1, lease=LONG, timeout=BLOCK))

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            started = anyio.current_time()
            await anyio.to_thread.run_sync(wake)
    return got, anyio.current_time() - started


# -- result expiry -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind", [OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.CANCEL], ids=lambda k: k.value
)
async def test_finished_jobs_expire_after_the_result_ttl(
    broker: MemoryBroker, clock: FakeClock, kind: OutcomeKind
) -> None:
    lease = await settled(broker, kind)

    clock.advance(TTL - 1)
    assert await broker.get(lease.job.id) is not None
    clock.advance(1.5)
    assert await broker.get(lease.job.id) is None


async def test_expiry_keeps_the_totals(broker: MemoryBroker, clock: FakeClock) -> None:
    await settled(broker, OutcomeKind.COMPLETE)
    await settled(broker, OutcomeKind.FAIL)

    clock.advance(TTL + 1)

    stats = await broker.stats([QUEUE])
    assert stats[QUEUE] == QueueStats(completed=1, failed=1)


async def test_dead_letters_do_not_expire(broker: MemoryBroker, clock: FakeClock) -> None:
    lease = await settled(broker, OutcomeKind.DEAD_LETTER, error="boom")

    clock.advance(TTL * 10)

    assert await broker.get(lease.job.id) is not None
    assert [job.id for job in await broker.dead_letters(QUEUE)] == [lease.job.id]


async def test_an_expired_id_can_be_enqueued_afresh(broker: MemoryBroker, clock: FakeClock) -> None:
    lease = await settled(broker, OutcomeKind.COMPLETE)
    clock.advance(TTL + 1)
    again = msgspec.structs.replace(make_job("new"), id=lease.job.id)

    [stored] = await broker.enqueue([again])

    assert (stored.status, stored.args) == (JobStatus.PENDING, ("new",))
    leases = await broker.reserve([QUEUE], count=5, lease=LONG, timeout=0)
    assert [lease.job.args for lease in leases] == [("new",)]


async def test_a_job_finished_again_is_kept_for_a_full_ttl(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    first = await settled(broker, OutcomeKind.COMPLETE)
    clock.advance(TTL - 1)
    await broker.enqueue([msgspec.structs.replace(make_job(), id=first.job.id)])
    [lease] = await broker.reserve([QUEUE], count=1, lease=LONG, timeout=0)
    done = Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE)
    await broker.settle([done])

    clock.advance(2)  # past the first run's expiry, well within the second's

    assert await broker.get(first.job.id) is not None


# -- threads and clocks ------------------------------------------------------------------------
@pytest.mark.parametrize("producer_backend", ["asyncio", "trio"])
async def test_an_enqueue_from_another_threads_event_loop_wakes_a_blocked_reserve(
    broker: MemoryBroker, producer_backend: str
) -> None:
    job = make_job()

    got, waited = await wait_for_job(
        broker, lambda: anyio.run(broker.enqueue, [job], backend=producer_backend)
    )

    assert [lease.job.id for lease in got] == [job.id]
    assert waited < PROMPT


async def test_an_enqueue_through_from_thread_wakes_a_blocked_reserve(
    broker: MemoryBroker,
) -> None:
    job = make_job()

    got, waited = await wait_for_job(broker, lambda: anyio.from_thread.run(broker.enqueue, [job]))

    assert [lease.job.id for lease in got] == [job.id]
    assert waited < PROMPT


async def test_moving_the_clock_from_a_plain_thread_wakes_a_blocked_reserve(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    [job] = await broker.enqueue([make_job()], delays=[60.0])

    got, waited = await wait_for_job(broker, lambda: clock.advance(61.0))

    assert [lease.job.id for lease in got] == [job.id]
    assert waited < PROMPT


async def test_on_the_system_clock_a_delayed_job_wakes_a_blocked_reserve() -> None:
    broker = MemoryBroker()
    [job] = await broker.enqueue([make_job()], delays=[0.05])
    started = anyio.current_time()

    with anyio.fail_after(PROMPT):
        leases = await broker.reserve([QUEUE], count=1, lease=LONG, timeout=BLOCK)

    assert [lease.job.id for lease in leases] == [job.id]
    assert anyio.current_time() - started >= 0.04


async def test_a_thread_can_use_the_broker_while_a_reserve_blocks(broker: MemoryBroker) -> None:
    jobs = [make_job(i) for i in range(3)]

    def produce() -> None:
        for job in jobs:
            anyio.run(broker.enqueue, [job])

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, produce)
            got: list[str] = []
            while len(got) < len(jobs):
                leases = await broker.reserve([QUEUE], count=3, lease=LONG, timeout=BLOCK)
                got += [lease.job.id for lease in leases]

    assert got == [job.id for job in jobs]


# -- edge cases --------------------------------------------------------------------------------
async def test_enqueue_stores_nothing_when_a_payload_does_not_decode(
    broker: MemoryBroker,
) -> None:
    good = make_job()
    garbled = make_job(payload=msgspec.Raw(b"\xc1"))  # 0xc1: never valid msgpack

    with pytest.raises(SerializationError):
        await broker.enqueue([good, garbled])

    assert await broker.get(good.id) is None
    assert await broker.stats([QUEUE]) == {QUEUE: QueueStats()}


async def test_enqueue_rejects_a_delay_list_of_the_wrong_length(broker: MemoryBroker) -> None:
    with pytest.raises(ValueError, match="delays"):
        await broker.enqueue([make_job(), make_job()], delays=[1.0])

    assert await broker.stats([QUEUE]) == {QUEUE: QueueStats()}


async def test_reserve_rejects_a_count_below_one(broker: MemoryBroker) -> None:
    await broker.enqueue([make_job()])

    with pytest.raises(ValueError, match="count"):
        await broker.reserve([QUEUE], count=0, lease=LONG, timeout=0)


@pytest.mark.parametrize("delay", [1e12, math.inf], ids=["ten-thousand-years", "inf"])
async def test_a_delay_past_the_datetime_range_waits_forever_without_harm(
    broker: MemoryBroker, clock: FakeClock, delay: float
) -> None:
    ready, late = make_job(), make_job()

    stored = await broker.enqueue([ready, late], delays=[0.0, delay])

    assert [job.status for job in stored] == [JobStatus.PENDING, JobStatus.SCHEDULED]
    assert stored[1].scheduled_at is not None
    clock.advance(86400 * 365)
    leases = await broker.reserve([QUEUE], count=5, lease=LONG, timeout=0)
    assert [lease.job.id for lease in leases] == [ready.id]
    assert (await broker.stats([QUEUE]))[QUEUE].scheduled == 1
    assert await broker.cancel(late.id) is True


async def test_a_retry_delay_past_the_datetime_range_does_not_stop_the_batch(
    broker: MemoryBroker,
) -> None:
    await broker.enqueue([make_job(), make_job()])
    first, second = await broker.reserve([QUEUE], count=2, lease=LONG, timeout=0)
    outcomes = [
        Outcome(job_id=first.job.id, token=first.token, kind=OutcomeKind.RETRY, delay=1e12),
        Outcome(job_id=second.job.id, token=second.token, kind=OutcomeKind.COMPLETE),
    ]

    assert await broker.settle(outcomes) == [True, True]

    assert (await broker.stats([QUEUE]))[QUEUE] == QueueStats(scheduled=1, completed=1)


async def test_requeue_dead_counts_a_repeated_id_once(broker: MemoryBroker) -> None:
    lease = await settled(broker, OutcomeKind.DEAD_LETTER, error="boom")

    assert await broker.requeue_dead(QUEUE, [lease.job.id, lease.job.id]) == 1

    leases = await broker.reserve([QUEUE], count=5, lease=LONG, timeout=0)
    assert [lease.job.id for lease in leases] == [lease.job.id]


async def test_a_requeued_dead_letter_forgets_an_old_cancel_request(
    broker: MemoryBroker,
) -> None:
    await broker.enqueue([make_job()])
    [lease] = await broker.reserve([QUEUE], count=1, lease=LONG, timeout=0)
    assert await broker.cancel(lease.job.id) is True
    # The handler had already failed for good before the worker heard of the cancel request.
    dead = Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.DEAD_LETTER)
    assert await broker.settle([dead]) == [True]
    assert await broker.requeue_dead(QUEUE) == 1

    [again] = await broker.reserve([QUEUE], count=1, lease=LONG, timeout=0)

    assert await broker.extend([again], lease=LONG) == [LeaseState.HELD]


async def test_stats_of_unused_queues_do_not_register_them(broker: MemoryBroker) -> None:
    await broker.enqueue([make_job()])

    await broker.stats(["typo"])
    await broker.dead_letters("another-typo")

    assert list(await broker.stats()) == [QUEUE]


async def test_a_reserved_job_does_not_alias_the_brokers_record(broker: MemoryBroker) -> None:
    await broker.enqueue([make_job()])
    [lease] = await broker.reserve([QUEUE], count=1, lease=LONG, timeout=0)

    lease.job.metadata["changed"] = True
    lease.job.attempts = 99

    stored = await broker.get(lease.job.id)
    assert stored is not None
    assert (stored.metadata, stored.attempts) == ({}, 1)


async def test_the_broker_is_an_async_context_manager(clock: FakeClock) -> None:
    async with MemoryBroker(clock=clock) as broker:
        await broker.enqueue([make_job()])
        assert (await broker.stats([QUEUE]))[QUEUE].queued == 1


async def test_from_url_builds_a_fresh_memory_broker() -> None:
    first, second = from_url("memory://"), from_url("MEMORY://")
    await first.enqueue([make_job()])

    assert isinstance(first, MemoryBroker)
    assert isinstance(second, MemoryBroker)
    assert (await second.stats([QUEUE]))[QUEUE].queued == 0


@pytest.mark.parametrize("url", ["http://example.com", "nonsense", ""])
def test_from_url_rejects_an_unsupported_scheme(url: str) -> None:
    with pytest.raises(ConfigurationError, match="scheme"):
        from_url(url)
