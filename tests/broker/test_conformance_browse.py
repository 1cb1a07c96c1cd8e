"""Broker conformance: listing a queue's jobs by state (``Broker.list_jobs``,
``taskit.broker.browse``).

Each listing is seeded through the public broker API (enqueue, reserve, settle by kind, cancel,
delays, dependencies, limits) and walked a few jobs a page: every job once, in the listing's
order, pages full until the last, whose cursor is None. Then walks while jobs come and go,
filters and their scan budget, bad input, and the finished listings following ``get``. The
counts, ``promote``, ``forget`` and ``stream_tail`` are in ``test_conformance_browse_ops``.
On Redis, time passes for real: the sleeps here are a few milliseconds, or one TTL of 1 s.
"""

from __future__ import annotations

import uuid

import msgspec
import pytest

from taskit.broker.browse import MAX_PAGE, SCAN_BUDGET, Listing
from taskit.dependencies import After
from taskit.job import JobResult, JobStatus, OutcomeKind
from taskit.limits import LimitSpec
from tests.broker._browse import (
    PAGE,
    full_pages,
    listed,
    name_id,
    name_of,
    named,
    take_each,
    walk,
    walk_from,
)
from tests.broker._helpers import LONG, make_job, new_queue, outcome
from tests.broker._sharded import shard_id
from tests.broker._workflows import short_lived
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

TICK = 0.002  # seconds between two ends, so that their end times differ (Redis: milliseconds)


async def seed(harness: BrokerHarness, q: str, other: str) -> dict[Listing, list[str]]:
    """Jobs of ``q`` in every state (and a few of queue ``other``); each listing's ids in its
    documented order (DEFERRED: sorted, as it has no order)."""
    broker = harness.broker
    # RUNNING, by lease deadline: the first reserved has the latest deadline.
    await broker.enqueue([named(broker, q, f"run{i}") for i in range(4)])
    for i in range(4):
        [held] = await broker.reserve([q], count=1, lease=LONG + 10 * (4 - i), timeout=0)
        assert held.job.id == name_id(broker, q, f"run{i}")
    # Ends, each a few milliseconds after the one before: COMPLETED, FAILED, CANCELLED, DEAD,
    # and RETRYING (due the later, the earlier it was settled).
    kinds = {
        "done": OutcomeKind.COMPLETE,
        "failed": OutcomeKind.FAIL,
        "cancelled": OutcomeKind.CANCEL,
        "dead": OutcomeKind.DEAD_LETTER,
        "retry": OutcomeKind.RETRY,
    }
    ending = [named(broker, q, f"{name}{i}") for i in range(4) for name in kinds]
    await broker.enqueue(ending)
    held = await take_each(broker, q, len(ending))
    for job in ending:
        name = name_of(job.id, q)
        kind, n = kinds[name[:-1]], int(name[-1])
        error = None if kind is OutcomeKind.COMPLETE else "boom"
        delay = 1000.0 - 10 * n if kind is OutcomeKind.RETRY else 0.0
        done = outcome(held.pop(job.id), kind, error=error, delay=delay)
        assert await broker.settle([done]) == [True]
        await harness.advance(TICK)
    # A waiting job cancelled: the newest of the cancelled ones.
    await broker.enqueue([named(broker, q, "cancelled4")])
    assert await broker.cancel(name_id(broker, q, "cancelled4"))
    # SCHEDULED, by due time.
    delays = [400.0, 100.0, 300.0, 200.0]
    await broker.enqueue([named(broker, q, f"later{i}") for i in range(4)], delays=delays)
    # DEFERRED: waiting for a job of the other queue, due in an hour.
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    gate = named(broker, other, "gate", workflow=workflow)
    waits = After(jobs=(gate.id,))
    children = [named(broker, q, f"child{i}", workflow=workflow, after=waits) for i in range(4)]
    await broker.enqueue([gate, *children], delays=[3600.0] + [0.0] * 4)
    # QUEUED last (the reserves above would take them): FIFO, a higher priority first.
    await broker.enqueue([named(broker, q, f"ready{i}") for i in range(4)])
    await broker.enqueue([named(broker, q, "urgent", priority=5)])
    # The other queue: one job in a few states, never listed for ``q``.
    await broker.enqueue([named(broker, other, "ready"), named(broker, other, "done")])
    [other_held] = await broker.reserve([other], count=1, lease=LONG, timeout=0)
    assert await broker.settle([outcome(other_held, OutcomeKind.COMPLETE)]) == [True]

    def ids(*names: str) -> list[str]:
        return [name_id(broker, q, name) for name in names]

    return {
        Listing.QUEUED: ids("urgent", "ready0", "ready1", "ready2", "ready3"),
        Listing.SCHEDULED: ids("later1", "later3", "later2", "later0"),
        Listing.RETRYING: ids("retry3", "retry2", "retry1", "retry0"),
        Listing.RUNNING: ids("run3", "run2", "run1", "run0"),
        Listing.DEFERRED: sorted(ids("child0", "child1", "child2", "child3")),
        Listing.COMPLETED: ids("done3", "done2", "done1", "done0"),
        Listing.FAILED: ids("failed3", "failed2", "failed1", "failed0"),
        Listing.CANCELLED: ids(
            "cancelled4", "cancelled3", "cancelled2", "cancelled1", "cancelled0"
        ),
        Listing.DEAD: ids("dead3", "dead2", "dead1", "dead0"),
    }


@pytest.mark.parametrize("listing", list(Listing))
async def test_a_walk_lists_each_job_of_the_state_once_in_order(
    harness: BrokerHarness, listing: Listing
) -> None:
    broker, q, other = harness.broker, new_queue(), new_queue()
    expected = (await seed(harness, q, other))[listing]

    pages = await walk(broker, q, listing)

    got = listed(pages)
    assert (sorted(got) if listing is Listing.DEFERRED else got) == expected
    full_pages(broker, pages, len(expected))
    for page in pages:
        assert all(job.status is listing.status and job.queue == q for job in page.jobs)
        assert page.scanned >= len(page.jobs)
    one = await broker.list_jobs(q, listing, limit=MAX_PAGE)  # one page holds them all
    assert (sorted(listed([one])) if listing is Listing.DEFERRED else listed([one])) == expected
    assert one.cursor is None
    nothing = await broker.list_jobs(new_queue(), listing)  # an unknown queue lists nothing
    assert (nothing.jobs, nothing.cursor) == ([], None)


async def test_a_listed_job_is_the_job_get_finds(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    await broker.enqueue([named(broker, q, "one", metadata={"k": "v"})])
    [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)

    [job] = (await broker.list_jobs(q, Listing.RUNNING)).jobs

    assert job == await broker.get(held.job.id)
    assert job.status is JobStatus.RUNNING
    assert job.attempts == 1


async def test_held_back_jobs_are_listed_queued(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    name = f"lim{uuid.uuid4().hex[:6]}"
    await broker.set_limits({name: LimitSpec(concurrency=1)})
    jobs = [named(broker, q, f"l{i}", limits=(name,)) for i in range(4)]
    await broker.enqueue(jobs)
    [held] = await broker.reserve([q], count=4, lease=LONG, timeout=0)  # the others wait in line
    assert held.job.id == jobs[0].id

    queued = await walk(broker, q, Listing.QUEUED)
    running = await walk(broker, q, Listing.RUNNING)

    assert sorted(listed(queued)) == [job.id for job in jobs[1:]]
    full_pages(broker, queued, 3)
    assert listed(running) == [jobs[0].id]


async def test_a_walk_never_lists_a_job_twice_while_jobs_come_and_go(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    first = [named(broker, q, f"a{i:02}") for i in range(12)]
    await broker.enqueue(first)
    page = await broker.list_jobs(q, Listing.QUEUED, limit=PAGE)
    seen = listed([page])
    assert seen == [job.id for job in first[:PAGE]]
    # Between pages: the first five leave (reserved), one further on is cancelled, more come.
    await take_each(broker, q, 5)
    assert await broker.cancel(first[8].id)
    await broker.enqueue([named(broker, q, f"b{i:02}") for i in range(4)])
    cursor = page.cursor
    while cursor is not None:
        page = await broker.list_jobs(q, Listing.QUEUED, cursor=cursor, limit=PAGE)
        seen += listed([page])
        cursor = page.cursor

    assert len(seen) == len(set(seen))
    stayed = {job.id for job in first[5:]} - {first[8].id}
    assert stayed <= set(seen)
    assert first[8].id not in seen[PAGE:]


async def test_a_finished_walk_never_lists_a_job_twice_while_jobs_end(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    jobs = [named(broker, q, f"j{i:02}") for i in range(12)]
    await broker.enqueue(jobs)
    held = await take_each(broker, q, 12)
    for job in jobs[:8]:
        assert await broker.settle([outcome(held.pop(job.id), OutcomeKind.COMPLETE)]) == [True]
        await harness.advance(TICK)
    page = await broker.list_jobs(q, Listing.COMPLETED, limit=PAGE)
    seen = listed([page])
    for lease in held.values():  # newer ends, ahead of where the walk is
        assert await broker.settle([outcome(lease, OutcomeKind.COMPLETE)]) == [True]
        await harness.advance(TICK)
    cursor = page.cursor
    while cursor is not None:
        page = await broker.list_jobs(q, Listing.COMPLETED, cursor=cursor, limit=PAGE)
        seen += listed([page])
        cursor = page.cursor

    assert len(seen) == len(set(seen))
    assert seen[:8] == [job.id for job in reversed(jobs[:8])]


async def test_filters_by_task_and_by_text_in_the_arguments_or_the_id(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    plain = [make_job(q, f"plain {i}") for i in range(5)]
    other_task = [msgspec.structs.replace(make_job(q, i), task="tests.other") for i in range(4)]
    greeting = make_job(q, "Hello World", city="Zürich")
    await broker.enqueue([*plain, *other_task, greeting])

    by_task = await walk(broker, q, Listing.QUEUED, task="tests.other")
    assert sorted(listed(by_task)) == sorted(job.id for job in other_task)
    assert sum(page.scanned for page in by_task) <= len(plain) + len(other_task) + 1 + PAGE

    for text in ("hello world", "HELLO", "zürich", greeting.id[4:14].upper()):
        found = await walk(broker, q, Listing.QUEUED, text=text)
        assert listed(found) == [greeting.id], text
    both = await walk(broker, q, Listing.QUEUED, task="tests.other", text="hello")
    assert listed(both) == []
    assert listed(await walk(broker, q, Listing.QUEUED, task="tests.noop", text="PLAIN 3")) == [
        plain[3].id
    ]


async def test_a_filtered_call_stops_at_the_scan_budget_with_a_cursor(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    # One shard's: a sharded broker examines one shard's part at a time.
    haystack = [make_job(q, "hay", job_id=shard_id(broker)) for _ in range(SCAN_BUDGET + 10)]
    needle = make_job(q, "needle", job_id=shard_id(broker))
    await broker.enqueue([*haystack, needle])

    page = await broker.list_jobs(q, Listing.QUEUED, text="needle", limit=10)

    assert page.jobs == []  # a short page: the budget ran out before the needle
    assert page.cursor is not None
    assert page.scanned <= SCAN_BUDGET
    pages = [page, *await walk_from(broker, q, Listing.QUEUED, page.cursor, text="needle")]
    assert listed(pages) == [needle.id]
    assert all(p.scanned <= SCAN_BUDGET for p in pages)


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1, True, 2.0, "3"])
async def test_a_bad_limit_is_refused(harness: BrokerHarness, limit: object) -> None:
    broker, q = harness.broker, new_queue()
    await broker.enqueue([make_job(q)])
    with pytest.raises(ValueError, match="limit"):
        await broker.list_jobs(q, Listing.QUEUED, limit=limit)  # type: ignore[arg-type]
    assert (await broker.stats([q]))[q].queued == 1


async def test_a_cursor_not_made_for_this_listing_is_refused(harness: BrokerHarness) -> None:
    broker, q, other = harness.broker, new_queue(), new_queue()
    await broker.enqueue([make_job(q) for _ in range(5)])
    await broker.enqueue([make_job(other) for _ in range(5)])
    await broker.enqueue([make_job(q) for _ in range(5)], delays=[100.0] * 5)
    cursor = (await broker.list_jobs(q, Listing.QUEUED, limit=2)).cursor
    assert cursor is not None
    for garbage in ["", "garbage", "x" * 300, "0", "-1", "\x00"]:
        with pytest.raises(ValueError, match="cursor"):
            await broker.list_jobs(q, Listing.QUEUED, cursor=garbage)
    with pytest.raises(ValueError, match="cursor"):
        await broker.list_jobs(q, Listing.SCHEDULED, cursor=cursor)  # another listing's
    with pytest.raises(ValueError, match="cursor"):
        await broker.list_jobs(other, Listing.QUEUED, cursor=cursor)  # another queue's
    stats = await broker.stats([q, other])
    assert (stats[q].queued, stats[q].scheduled, stats[other].queued) == (5, 5, 5)
    rest = await broker.list_jobs(q, Listing.QUEUED, cursor=cursor)  # still good
    assert len(rest.jobs) == 3
    assert rest.cursor is None


async def test_a_job_kept_for_no_time_is_never_listed(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    jobs = [named(broker, q, "zero", result_ttl=0.0), named(broker, q, "kept")]
    await broker.enqueue(jobs)
    held = await take_each(broker, q, 2)
    ends = [
        outcome(held[name_id(broker, q, "zero")], OutcomeKind.COMPLETE, result_ttl=0.0),
        outcome(held[name_id(broker, q, "kept")], OutcomeKind.COMPLETE),
    ]
    assert await broker.settle(ends) == [True, True]

    assert listed(await walk(broker, q, Listing.COMPLETED)) == [name_id(broker, q, "kept")]
    assert await broker.get(name_id(broker, q, "zero")) is None


async def test_a_finished_job_leaves_its_listing_when_its_record_expires(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    jobs = [
        named(broker, q, f"short-{kind}", result_ttl=1.0) for kind in ("done", "failed", "cancel")
    ]
    await broker.enqueue([*jobs, named(broker, q, "kept")])
    held = await take_each(broker, q, 4)
    kinds = [OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.CANCEL]
    ends = [
        outcome(held[job.id], kind, result_ttl=1.0, error=None if i == 0 else "x")
        for i, (job, kind) in enumerate(zip(jobs, kinds, strict=True))
    ]
    ends.append(outcome(held[name_id(broker, q, "kept")], OutcomeKind.COMPLETE))
    assert await broker.settle(ends) == [True] * 4
    for job, listing in zip(
        jobs, [Listing.COMPLETED, Listing.FAILED, Listing.CANCELLED], strict=True
    ):
        assert job.id in listed(await walk(broker, q, listing))

    await harness.advance(1.2)

    for job, listing in zip(
        jobs, [Listing.COMPLETED, Listing.FAILED, Listing.CANCELLED], strict=True
    ):
        assert await broker.get(job.id) is None
        assert listed(await walk(broker, q, listing)) == (
            [name_id(broker, q, "kept")] if listing is Listing.COMPLETED else []
        )


async def test_a_listing_keeps_a_job_at_most_the_brokers_result_ttl(
    harness: BrokerHarness, request: pytest.FixtureRequest
) -> None:
    async with short_lived(harness, request, 1.0) as (broker, advance):
        q = new_queue()
        await broker.enqueue([named(broker, q, "long", result_ttl=3600.0)])
        [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
        done = outcome(held, OutcomeKind.COMPLETE, result_ttl=3600.0)
        assert await broker.settle([done]) == [True]
        assert listed(await walk(broker, q, Listing.COMPLETED)) == [held.job.id]

        await advance(1.2)

        found = await broker.get(held.job.id)  # kept for ``get``: the job's own TTL
        assert found is not None
        assert found.status is JobStatus.COMPLETED
        assert listed(await walk(broker, q, Listing.COMPLETED)) == []


async def test_a_cascade_failure_and_a_cancelled_dependent_are_listed(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    parent = named(broker, q, "parent", workflow=workflow)
    child = named(broker, q, "child", workflow=workflow, after=After(jobs=(parent.id,)))
    grandchild = named(broker, q, "grandchild", workflow=workflow, after=After(jobs=(child.id,)))
    gate = named(broker, q, "gate", workflow=workflow)
    waiter = named(broker, q, "waiter", workflow=workflow, after=After(jobs=(gate.id,)))
    await broker.enqueue([parent, child, grandchild])
    await broker.enqueue([gate, waiter], delays=[3600.0, 0.0])
    [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
    assert held.job.id == parent.id
    assert await broker.settle([outcome(held, OutcomeKind.FAIL, error="boom")]) == [True]
    await harness.advance(TICK)
    assert await broker.cancel(gate.id)  # its dependent ends CANCELLED with it

    failed = await walk(broker, q, Listing.FAILED)
    cancelled = await walk(broker, q, Listing.CANCELLED)

    assert sorted(listed(failed)) == sorted([parent.id, child.id, grandchild.id])
    assert {job.error_type for job in failed[0].jobs if job.id != parent.id} == {"DependencyFailed"}
    assert sorted(listed(cancelled)) == sorted([gate.id, waiter.id])
    assert listed(await walk(broker, q, Listing.DEFERRED)) == []


async def test_a_finished_listing_shows_what_get_shows(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    jobs = [named(broker, q, f"p{i}") for i in range(3)]
    await broker.enqueue(jobs, delays=[0.0, 100.0, 0.0])
    await broker.purge(q)  # deleted, or kept CANCELLED: whichever ``get`` shows

    kept = [job.id for job in jobs if await broker.get(job.id) is not None]
    assert sorted(listed(await walk(broker, q, Listing.CANCELLED))) == sorted(kept)
    for listing in (Listing.QUEUED, Listing.SCHEDULED):
        assert listed(await walk(broker, q, listing)) == []


async def test_a_completed_job_keeps_its_result_in_the_listing(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    await broker.enqueue([named(broker, q, "one")])
    [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
    result = JobResult(success=True, value={"answer": 42})
    assert await broker.settle([outcome(held, OutcomeKind.COMPLETE, result=result)]) == [True]

    [job] = (await broker.list_jobs(q, Listing.COMPLETED)).jobs

    assert job.status is JobStatus.COMPLETED
    assert job.result is not None
    assert job.result.value == {"answer": 42}


async def test_a_job_that_ends_again_is_listed_once_where_it_ended_last(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    jobs = [named(broker, q, f"d{i}") for i in range(2)] + [named(broker, q, "done")]
    await broker.enqueue(jobs)
    held = await take_each(broker, q, 3)
    for job in jobs:  # d0 dies, then d1, then "done" completes
        kind = OutcomeKind.COMPLETE if job is jobs[2] else OutcomeKind.DEAD_LETTER
        assert await broker.settle([outcome(held[job.id], kind, error="x")]) == [True]
        await harness.advance(TICK)
    assert await broker.requeue_dead(q, [jobs[0].id]) == 1
    await broker.enqueue([named(broker, q, "done")])  # a finished job's id: stored anew
    assert listed(await walk(broker, q, Listing.DEAD)) == [jobs[1].id]
    assert listed(await walk(broker, q, Listing.COMPLETED)) == []

    again = await take_each(broker, q, 2)
    assert await broker.settle([outcome(again[jobs[0].id], OutcomeKind.DEAD_LETTER)]) == [True]
    await harness.advance(TICK)
    assert await broker.settle([outcome(again[jobs[2].id], OutcomeKind.COMPLETE)]) == [True]

    assert listed(await walk(broker, q, Listing.DEAD)) == [jobs[0].id, jobs[1].id]
    assert listed(await walk(broker, q, Listing.COMPLETED)) == [jobs[2].id]
