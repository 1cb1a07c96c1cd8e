"""Broker conformance: limits (``Broker.set_limits``, ``Job.limits``) held inside ``reserve``.

Concurrency slots per limit key under leases, freed by every settle; jobs held back wait in a
FIFO line per key, PENDING, with no attempt spent; raising or deleting a limit lets them out;
rates (GCRA with burst) delay jobs until a start is allowed. Same promises on every broker kind.
"""

from __future__ import annotations

import anyio
import msgspec
import pytest

from taskit.broker.base import Broker
from taskit.broker.placement import HOME
from taskit.job import Job, JobStatus, Lease, OutcomeKind
from taskit.limits import LimitSpec
from tests.broker._helpers import LONG, make_job, new_queue, outcome, status_of
from tests.broker._sharded import shard_id
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

#: A blocking reserve that is never meant to run out, and how long a woken one may take.
BLOCK = 10.0
PROMPT = 3.0


def limited(queue: str, *keys: str) -> Job:
    return msgspec.structs.replace(make_job(queue), limits=keys)


async def take(broker: Broker, queue: str, count: int = 10) -> list[Lease]:
    return await broker.reserve([queue], count=count, lease=LONG, timeout=0)


async def running_of(broker: Broker, name: str) -> dict[str, int]:
    return (await broker.limit_usage(name)).running


async def test_at_most_n_run_per_key_and_a_held_job_spends_no_attempt(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=2)})
    a = [limited(q, "ex:a") for _ in range(3)]
    b = limited(q, "ex:b")
    await broker.enqueue([*a, b])

    got = {lease.job.id for lease in await take(broker, q)}

    assert got == {a[0].id, a[1].id, b.id}
    held = await broker.get(a[2].id)
    assert held is not None
    assert held.status is JobStatus.PENDING
    assert held.attempts == 0
    usage = await broker.limit_usage("ex")
    assert usage.running == {"ex:a": 2, "ex:b": 1}
    assert usage.waiting == {"ex:a": 1}
    assert await take(broker, q) == []  # held back, not reserved by anyone
    stats = (await broker.stats([q]))[q]
    assert (stats.queued, stats.running) == (1, 3)  # held back: still a waiting job


async def test_a_global_limit_counts_every_job_that_names_it(harness: BrokerHarness) -> None:
    broker, q1, q2 = harness.broker, new_queue(), new_queue()
    await broker.set_limits({"api": LimitSpec(concurrency=1)})
    await broker.enqueue([limited(q1, "api"), limited(q2, "api")])

    assert len(await take(broker, q1)) == 1
    assert await take(broker, q2) == []
    assert await running_of(broker, "api") == {"api": 1}


async def test_several_limits_are_taken_all_or_none(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    await broker.set_limits({"a": LimitSpec(concurrency=5), "b": LimitSpec(concurrency=1)})
    await broker.enqueue([limited(q, "b")])
    [first] = await take(broker, q)
    both = limited(q, "a:x", "b")
    await broker.enqueue([both])

    assert await take(broker, q) == []
    assert await running_of(broker, "a") == {}  # no slot of "a:x" taken by the held-back job
    await broker.settle([outcome(first, OutcomeKind.COMPLETE)])
    [again] = await take(broker, q)
    assert again.job.id == both.id
    assert again.job.attempts == 1
    assert await running_of(broker, "a") == {"a:x": 1}


KINDS = [
    (OutcomeKind.COMPLETE, {}),
    (OutcomeKind.FAIL, {}),
    (OutcomeKind.CANCEL, {}),
    (OutcomeKind.RETRY, {"delay": 60.0}),
    (OutcomeKind.RETRY, {}),
    (OutcomeKind.DEAD_LETTER, {}),
    (OutcomeKind.RELEASE, {}),
]


#: Outcomes that put the job back at the front of its queue at once (without a delay).
FRONT = (OutcomeKind.RETRY, OutcomeKind.RELEASE)


@pytest.mark.parametrize(("kind", "fields"), KINDS, ids=[f"{k.value}{len(f)}" for k, f in KINDS])
async def test_every_settle_frees_the_slot_for_the_next_in_line(
    harness: BrokerHarness, kind: OutcomeKind, fields: dict[str, float]
) -> None:
    broker, q = harness.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=1)})
    first, second = limited(q, "ex:k"), limited(q, "ex:k")
    await broker.enqueue([first, second])
    [held] = await take(broker, q)
    assert await take(broker, q) == []

    assert await broker.settle([outcome(held, kind, **fields)]) == [True]

    # The freed slot goes to one job: the next in line, or the first again when it is ready
    # again at the front (an immediate retry or a release).
    [after] = await take(broker, q)
    assert after.job.id in ({first.id, second.id} if kind in FRONT else {second.id})
    retried = after.job.id == first.id and kind is OutcomeKind.RETRY
    assert after.job.attempts == (2 if retried else 1)  # a retry counts; a limit miss never
    assert await running_of(broker, "ex") == {"ex:k": 1}
    await broker.settle([outcome(after, OutcomeKind.COMPLETE)])
    assert await running_of(broker, "ex") == {}


async def test_a_reclaimed_job_keeps_its_slot_until_the_reclaimer_settles(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=1)})
    waiting = limited(q, "ex:k")
    await broker.enqueue([limited(q, "ex:k"), waiting])
    await broker.reserve([q], count=1, lease=0.2, timeout=0)
    await take(broker, q)  # the second waits in line
    await harness.advance(0.4)

    [again] = await broker.reclaim([q], lease=LONG)
    assert await running_of(broker, "ex") == {"ex:k": 1}
    assert await take(broker, q) == []
    await broker.settle([outcome(again, OutcomeKind.RETRY, delay=60.0)])

    [next_one] = await take(broker, q)
    assert next_one.job.id == waiting.id
    assert next_one.job.attempts == 1


async def test_the_line_of_a_key_is_first_in_first_out(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=1)})
    jobs = [limited(q, "ex:k") for _ in range(4)]
    for job in jobs:  # one call each: enqueue order is unambiguous
        await broker.enqueue([job])
    order = []
    for _ in jobs:
        [held] = await take(broker, q)
        order.append(held.job.id)
        await broker.settle([outcome(held, OutcomeKind.COMPLETE)])
    assert order == [job.id for job in jobs]


async def test_raising_then_deleting_a_limit_lets_the_waiting_jobs_out(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=1)})
    await broker.enqueue([limited(q, "ex:k") for _ in range(5)])
    assert len(await take(broker, q)) == 1

    await broker.set_limits({"ex": LimitSpec(concurrency=3)})
    assert len(await take(broker, q)) == 2
    assert (await broker.limit_usage("ex")).waiting == {"ex:k": 2}

    await broker.set_limits({"ex": None})
    assert len(await take(broker, q)) == 2
    assert await broker.limit_specs() == {}


async def test_a_limit_with_no_definition_holds_nothing_back(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    await broker.enqueue([limited(q, "nowhere:k") for _ in range(3)])

    assert len(await take(broker, q)) == 3
    usage = await broker.limit_usage("nowhere")
    assert usage.spec is None
    assert usage.running == {}
    assert usage.waiting == {}


async def test_definitions_are_stored_and_only_new_keeps_a_stored_one(
    harness: BrokerHarness,
) -> None:
    broker = harness.broker
    spec = LimitSpec(concurrency=3, rate=10, per=60.0, burst=20)
    await broker.set_limits({"a": spec, "b": LimitSpec(rate=5, per=0.5)})
    await broker.set_limits({"a": LimitSpec(concurrency=1), "c": LimitSpec(concurrency=2)},
                            only_new=True)  # fmt: skip

    assert await broker.limit_specs() == {
        "a": spec,
        "b": LimitSpec(rate=5, per=0.5),
        "c": LimitSpec(concurrency=2),
    }


async def test_a_rate_delays_jobs_past_its_burst_and_spends_no_attempt(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    # One start every 0.2 s, two at once after an idle time.
    await broker.set_limits({"api": LimitSpec(rate=2, per=0.4, burst=2)})
    jobs = [limited(q, "api:t") for _ in range(4)]
    await broker.enqueue(jobs)

    assert len(await take(broker, q)) == 2
    later = await broker.get(jobs[3].id)
    assert later is not None
    assert later.status is JobStatus.SCHEDULED
    assert later.attempts == 0
    await harness.advance(0.25)
    [third] = await take(broker, q)
    assert third.job.attempts == 1
    assert await take(broker, q) == []  # the fourth: not before another 0.2 s


async def test_a_late_start_counts_from_its_due_time_so_lateness_does_not_add_up(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    # One start every 0.5 s, no burst: the second is due at 0.5 s, the third at 1.0 s.
    await broker.set_limits({"api": LimitSpec(rate=1, per=0.5, burst=1)})
    await broker.enqueue([limited(q, "api:t") for _ in range(3)])
    assert len(await take(broker, q)) == 1

    await harness.advance(0.6)  # a worker that comes 0.1 s late
    assert len(await take(broker, q)) == 1
    await harness.advance(0.45)  # 1.05 s: the third's time (it would be 1.1 s counted from 0.6)

    assert len(await take(broker, q)) == 1


async def test_cancel_and_purge_take_held_back_jobs_out_of_their_lines(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=1)})
    jobs = [limited(q, "ex:k") for _ in range(4)]
    await broker.enqueue(jobs)
    [held] = await take(broker, q)

    assert await broker.cancel(jobs[1].id) is True
    assert await status_of(broker, jobs[1].id) is JobStatus.CANCELLED
    assert await broker.purge(q) == 2
    assert (await broker.limit_usage("ex")).waiting == {}
    await broker.settle([outcome(held, OutcomeKind.COMPLETE)])
    assert await take(broker, q) == []
    assert await running_of(broker, "ex") == {}


async def test_a_blocked_reserve_wakes_when_a_slot_frees(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=1)})
    waiting = limited(q, "ex:k")
    await broker.enqueue([limited(q, "ex:k"), waiting])
    [held] = await take(broker, q, count=1)
    got: list[Lease] = []

    async def block() -> None:
        got.extend(await broker.reserve([q], count=1, lease=LONG, timeout=BLOCK))

    with anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(block)
            await anyio.wait_all_tasks_blocked()
            await broker.settle([outcome(held, OutcomeKind.COMPLETE)])
    assert [lease.job.id for lease in got] == [waiting.id]


async def test_a_reserve_looks_past_a_long_line_of_held_back_jobs(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=0)})  # holds every job back
    await broker.enqueue([limited(q, "ex:k") for _ in range(250)])
    free = make_job(q, job_id=shard_id(broker, shard=HOME))  # behind the line, in its shard
    await broker.enqueue([free])

    with anyio.fail_after(PROMPT):
        got = await broker.reserve([q], count=1, lease=LONG, timeout=BLOCK)
    assert [lease.job.id for lease in got] == [free.id]
    assert (await broker.limit_usage("ex")).waiting == {"ex:k": 250}


async def test_bad_input_is_refused_with_a_clear_error(harness: BrokerHarness) -> None:
    broker = harness.broker
    with pytest.raises(ValueError, match="limit name"):
        await broker.set_limits({"a:b": LimitSpec(concurrency=1)})
    with pytest.raises(TypeError, match="LimitSpec"):
        await broker.set_limits({"a": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="top"):
        await broker.limit_usage("a", top=0)
    assert await broker.limit_specs() == {}
