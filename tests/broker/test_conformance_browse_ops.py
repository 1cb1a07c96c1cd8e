"""Broker conformance: what a dashboard reads and does besides listings
(``taskit.broker.browse``): counts per minute, ``promote``, ``forget``, ``stream_tail``.

Counts are read for the test's own queues, summed over the minutes they fall in (on Redis the
server's clock may cross a minute meanwhile). The memory broker's tests at the end check what
only a clock moved by hand can: exact run-time buckets, minutes in order, and expiry after
``COUNTS_KEPT``.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left
from collections.abc import Sequence

import anyio
import pytest

from taskit.broker.base import Broker
from taskit.broker.browse import COUNTS_KEPT, RUN_TIME_BOUNDS, Counts, Listing
from taskit.broker.memory import MemoryBroker
from taskit.clock import FakeClock
from taskit.dependencies import After
from taskit.job import JobResult, JobStatus, Lease, OutcomeKind
from tests.broker._browse import listed, name_id, named, take_each, walk
from tests.broker._helpers import LONG, make_job, new_queue, outcome, status_of
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

BLOCK = 10.0  # a blocking reserve that is never meant to run out
PROMPT = 3.0  # how long a woken one may take
FIELDS = ("enqueued", "completed", "failed", "retried", "dead", "cancelled")


async def clock_of(broker: Broker) -> float:
    """The broker's time now, from a job it starts (in a queue of its own)."""
    probe = new_queue()
    await broker.enqueue([make_job(probe)])
    [held] = await broker.reserve([probe], count=1, lease=LONG, timeout=0)
    assert held.job.started_at is not None
    return held.job.started_at.timestamp()


async def summed(broker: Broker, queue: str, since: float) -> dict[str, object]:
    """``queue``'s counts since ``since``, summed over minutes: each field, and ``runs``."""
    rows = await broker.counts(since, queues=[queue])
    assert all(row.queue == queue for row in rows)
    total: dict[str, object] = {f: sum(getattr(row, f) for row in rows) for f in FIELDS}
    total["runs"] = [sum(column) for column in zip(*(row.runs for row in rows), strict=True)]
    return total


def in_order(rows: Sequence[Counts]) -> None:
    assert [(row.minute, row.queue) for row in rows] == sorted((r.minute, r.queue) for r in rows)
    assert all(row.minute % 60 == 0 for row in rows)
    assert all(len(row.runs) == len(RUN_TIME_BOUNDS) + 1 for row in rows)


async def test_enqueues_are_counted_once_per_stored_job(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    since = await clock_of(broker) - 60
    jobs = [make_job(q) for _ in range(3)]
    await broker.enqueue(jobs)
    again = await broker.enqueue([jobs[0]])  # a duplicate of a kept job: not stored
    assert again[0].duplicate
    await broker.enqueue([make_job(q)], delays=[100.0])

    total = await summed(broker, q, since)

    assert total["enqueued"] == 4
    assert total["completed"] == total["failed"] == 0
    assert sum(total["runs"]) == 0  # type: ignore[arg-type]


async def test_settles_are_counted_by_outcome_and_each_run_timed(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    since = await clock_of(broker) - 60
    kinds = [OutcomeKind.COMPLETE, OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.RETRY]
    kinds += [OutcomeKind.DEAD_LETTER, OutcomeKind.CANCEL, OutcomeKind.RELEASE]
    await broker.enqueue([make_job(q) for _ in kinds])
    held = await broker.reserve([q], count=len(kinds), lease=LONG, timeout=0)
    ends = [
        outcome(lease, kind, error="x", delay=100.0)
        if kind in (OutcomeKind.FAIL, OutcomeKind.RETRY, OutcomeKind.DEAD_LETTER)
        else outcome(lease, kind)
        for lease, kind in zip(held, kinds, strict=True)
    ]
    assert await broker.settle(ends) == [True] * len(ends)
    assert await broker.settle(ends[:1]) == [True]  # a retried settle: applied once
    stale = outcome(held[-1], OutcomeKind.COMPLETE)  # the released job's old lease
    assert await broker.settle([stale]) == [False]
    waiting = make_job(q)
    await broker.enqueue([waiting])
    assert await broker.cancel(waiting.id)  # ended before it ran: not a settle

    total = await summed(broker, q, since)

    assert {f: total[f] for f in FIELDS} == {
        "enqueued": len(kinds) + 1,
        "completed": 2,
        "failed": 1,
        "retried": 1,
        "dead": 1,
        "cancelled": 1,
    }
    runs = total["runs"]
    assert isinstance(runs, list)
    assert sum(runs) == 6  # every settle but the release
    assert sum(runs[: bisect_left(RUN_TIME_BOUNDS, 1.0) + 1]) == 6  # each ran under a second


async def test_counts_are_per_queue_and_minute_and_filtered(harness: BrokerHarness) -> None:
    broker = harness.broker
    q1, q2 = sorted([new_queue(), new_queue()])
    now = await clock_of(broker)
    since = now - 60
    await broker.enqueue([make_job(q1), make_job(q1), make_job(q2)])

    rows = await broker.counts(since, queues=[q2, q1])

    in_order(rows)
    assert {row.queue for row in rows} == {q1, q2}
    assert sum(row.enqueued for row in rows if row.queue == q1) == 2
    assert sum(row.enqueued for row in rows if row.queue == q2) == 1
    assert [row.queue for row in await broker.counts(since, queues=[q2])] == [q2] * len(
        [row for row in rows if row.queue == q2]
    )
    assert await broker.counts(since, queues=[]) == []
    assert await broker.counts(since, queues=[new_queue()]) == []
    everything = await broker.counts(since)  # every queue
    in_order(everything)
    assert {q1, q2} <= {row.queue for row in everything}
    first = rows[0].minute
    assert await broker.counts(first + 120, queues=[q1, q2]) == []  # after them
    assert await broker.counts(since, first, queues=[q1, q2]) == []  # before them
    assert await broker.counts(first + 1, first + 60, queues=[q1, q2]) == []  # a minute's start
    upto = await broker.counts(since, first + 60, queues=[q1, q2])
    assert upto == [row for row in rows if row.minute == first]
    assert await broker.counts(0.0, queues=[q1]) == [row for row in rows if row.queue == q1]


async def test_promote_makes_a_scheduled_or_retrying_job_ready_now(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    retrying = named(broker, q, "retrying")
    await broker.enqueue([retrying])
    [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
    retry = outcome(held, OutcomeKind.RETRY, error="x", delay=3600.0)
    assert await broker.settle([retry]) == [True]
    ready, scheduled = named(broker, q, "ready"), named(broker, q, "scheduled")
    await broker.enqueue([ready, scheduled], delays=[0.0, 3600.0])

    assert await broker.promote(scheduled.id)
    assert await broker.promote(retrying.id)

    assert await status_of(broker, scheduled.id) is JobStatus.PENDING
    assert listed(await walk(broker, q, Listing.SCHEDULED)) == []
    assert listed(await walk(broker, q, Listing.RETRYING)) == []
    got = await broker.reserve([q], count=3, lease=LONG, timeout=0)
    assert [lease.job.id for lease in got] == [ready.id, scheduled.id, retrying.id]
    assert got[2].job.attempts == 2


async def test_promote_wakes_a_blocked_reserve(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    later = make_job(q)
    await broker.enqueue([later], delays=[3600.0])
    got: list[Lease] = []

    async def block() -> None:
        got.extend(await broker.reserve([q], count=1, lease=LONG, timeout=BLOCK))

    with anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(block)
            await anyio.wait_all_tasks_blocked()
            assert await broker.promote(later.id)
    assert [lease.job.id for lease in got] == [later.id]


async def test_promote_leaves_every_other_job_alone(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    gate = named(broker, q, "gate", workflow=workflow)
    deferred = named(broker, q, "deferred", workflow=workflow, after=After(jobs=(gate.id,)))
    jobs = [named(broker, q, "running"), named(broker, q, "done"), named(broker, q, "dead")]
    await broker.enqueue(jobs)
    held = await take_each(broker, q, 3)
    ends = [
        outcome(held[name_id(broker, q, "done")], OutcomeKind.COMPLETE),
        outcome(held[name_id(broker, q, "dead")], OutcomeKind.DEAD_LETTER, error="x"),
    ]
    assert await broker.settle(ends) == [True, True]
    await broker.enqueue([gate, deferred, named(broker, q, "pending")], delays=[3600.0, 0.0, 0.0])
    before = {job.id: await status_of(broker, job.id) for job in [*jobs, deferred]}

    for name in ("running", "done", "dead", "deferred", "pending", "unknown"):
        assert not await broker.promote(name_id(broker, q, name)), name

    assert {job_id: await status_of(broker, job_id) for job_id in before} == before
    assert await status_of(broker, name_id(broker, q, "pending")) is JobStatus.PENDING


async def test_forget_deletes_finished_jobs_and_dead_letters_only(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    jobs = [named(broker, q, name) for name in ("done", "failed", "dead", "running")]
    await broker.enqueue(jobs)
    held = await take_each(broker, q, 4)
    ends = [
        outcome(held[name_id(broker, q, "done")], OutcomeKind.COMPLETE),
        outcome(held[name_id(broker, q, "failed")], OutcomeKind.FAIL, error="x"),
        outcome(held[name_id(broker, q, "dead")], OutcomeKind.DEAD_LETTER, error="x"),
    ]
    assert await broker.settle(ends) == [True] * 3
    await broker.enqueue([named(broker, q, "cancelled"), named(broker, q, "pending")])
    await broker.enqueue([named(broker, q, "scheduled")], delays=[3600.0])
    assert await broker.cancel(name_id(broker, q, "cancelled"))
    assert (await broker.stats([q]))[q].dead == 1
    gone = [name_id(broker, q, name) for name in ("done", "failed", "cancelled", "dead")]
    live = [name_id(broker, q, name) for name in ("running", "pending", "scheduled")]

    count = await broker.forget([*gone, *live, gone[0], name_id(broker, q, "unknown")])

    assert count == 4
    for job_id in gone:
        assert await broker.get(job_id) is None, job_id
    assert [await status_of(broker, job_id) for job_id in live] == [
        JobStatus.RUNNING,
        JobStatus.PENDING,
        JobStatus.SCHEDULED,
    ]
    assert (await broker.stats([q]))[q].dead == 0
    assert await broker.dead_letters(q) == []
    for listing in (Listing.COMPLETED, Listing.FAILED, Listing.CANCELLED, Listing.DEAD):
        assert listed(await walk(broker, q, listing)) == [], listing
    assert await broker.forget(gone) == 0


async def test_forget_keeps_a_workflows_results(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    parent = named(broker, q, "parent", workflow=workflow)
    await broker.enqueue([parent])
    [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
    result = JobResult(success=True, value=7)
    assert await broker.settle([outcome(held, OutcomeKind.COMPLETE, result=result)]) == [True]

    assert await broker.forget([parent.id]) == 1

    assert await broker.get(parent.id) is None
    [kept] = await broker.workflow_results(workflow, [parent.id])
    assert kept is not None
    assert kept.value == 7
    state = await broker.workflow(workflow)
    assert state is not None
    assert [(n.id, n.status) for n in state.nodes] == [(parent.id, JobStatus.COMPLETED)]


async def test_stream_tail_reads_the_newest_entries_oldest_first(harness: BrokerHarness) -> None:
    broker, stream = harness.broker, f"stream-{uuid.uuid4().hex[:8]}"
    assert await broker.stream_tail(stream) == []
    ids = [await broker.stream_add(stream, f"e{i}".encode(), maxlen=100) for i in range(5)]
    entries = [(entry_id, f"e{i}".encode()) for i, entry_id in enumerate(ids)]

    assert await broker.stream_tail(stream, count=3) == entries[2:]
    assert await broker.stream_tail(stream) == entries
    assert await broker.stream_tail(stream, after=ids[1]) == entries[2:]
    assert await broker.stream_tail(stream, after=ids[1], count=2) == entries[2:4]
    assert await broker.stream_tail(stream, after=ids[-1]) == []
    for bad in (0, -1):
        with pytest.raises(ValueError, match="count"):
            await broker.stream_tail(stream, count=bad)
    # Nothing was delivered: a group still gets every entry.
    read = await broker.stream_read(stream, "g", "c", count=10, claim_after=30.0)
    assert read == entries


# -- the memory broker alone: its clock moves by hand ---------------------------------------


async def test_memory_run_times_fall_in_their_buckets() -> None:
    clock = FakeClock()
    broker = MemoryBroker(clock=clock, result_ttl=60.0)
    q = new_queue()
    await broker.enqueue([make_job(q) for _ in range(3)])
    first, second, third = await broker.reserve([q], count=3, lease=LONG * 1000, timeout=0)

    clock.advance(0.25)  # exactly a bound: in that bound's bucket
    assert await broker.settle([outcome(first, OutcomeKind.COMPLETE)]) == [True]
    clock.advance(0.5)  # 0.75 s: above 0.5, up to 1.0
    assert await broker.settle([outcome(second, OutcomeKind.FAIL, error="x")]) == [True]
    clock.advance(3600.0)  # above every bound: the last bucket
    assert await broker.settle([outcome(third, OutcomeKind.RETRY, error="x")]) == [True]

    total = await summed(broker, q, clock.time() - 7200)
    expected = [0] * (len(RUN_TIME_BOUNDS) + 1)
    for bucket in (RUN_TIME_BOUNDS.index(0.25), RUN_TIME_BOUNDS.index(1.0), -1):
        expected[bucket] += 1
    assert total["runs"] == expected


async def test_memory_a_reclaimed_run_is_timed_from_its_reclaim() -> None:
    clock = FakeClock()
    broker = MemoryBroker(clock=clock, result_ttl=60.0)
    q = new_queue()
    await broker.enqueue([make_job(q)])
    await broker.reserve([q], count=1, lease=5.0, timeout=0)
    clock.advance(600.0)  # its lease ran out long ago
    [again] = await broker.reclaim([q], lease=LONG)
    clock.advance(0.25)
    assert await broker.settle([outcome(again, OutcomeKind.DEAD_LETTER, error="x")]) == [True]

    total = await summed(broker, q, clock.time() - 7200)

    assert total["dead"] == 1
    expected = [0] * (len(RUN_TIME_BOUNDS) + 1)
    expected[RUN_TIME_BOUNDS.index(0.25)] = 1  # not the 600 s since its first reserve
    assert total["runs"] == expected


async def test_memory_counts_are_by_minute_and_kept_a_day() -> None:
    start = 1_699_999_980  # a minute's start
    clock = FakeClock(float(start))
    broker = MemoryBroker(clock=clock, result_ttl=60.0)
    q1, q2 = "a-queue", "b-queue"
    await broker.enqueue([make_job(q2)])
    clock.advance(59.0)
    await broker.enqueue([make_job(q1), make_job(q1)])
    clock.advance(1.0)  # the next minute
    await broker.enqueue([make_job(q1)])

    rows = await broker.counts(0.0)

    assert [(row.minute, row.queue, row.enqueued) for row in rows] == [
        (start, q1, 2),
        (start, q2, 1),
        (start + 60, q1, 1),
    ]
    assert await broker.counts(start + 60) == rows[2:]
    assert await broker.counts(start, start + 60, queues=[q2]) == rows[1:2]

    clock.advance(COUNTS_KEPT - 30.0)  # the first minute is now older than COUNTS_KEPT
    assert await broker.counts(0.0) == rows[2:]
    clock.advance(60.0)
    assert await broker.counts(0.0) == []
