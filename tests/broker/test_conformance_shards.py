"""Broker conformance across shards: what ``taskit.broker.sharded`` promises for jobs of
different shards, on the sharded kinds only (``sharded_harness``).

The rest of the suite checks every order of ``Broker`` among the jobs of one shard. Here the
jobs are spread over every shard (``spread_ids``), and each test asserts the weaker promise the
module docstring states across shards, exactly: every job reserved once and a reserve taking at
most ``count`` (filling it from the other shards); each shard's jobs in their order; a blocked
reserve woken by any shard; sums; walks shard by shard; pauses in force on every shard; a bad
batch storing nothing anywhere; leases naming their shard; jobs found wherever their limits,
dedup window or workflow placed them.
"""

from __future__ import annotations

import uuid

import anyio
import msgspec
import pytest

from taskit.broker.base import Broker
from taskit.broker.browse import SCAN_BUDGET, Listing
from taskit.broker.placement import HOME, shard_of
from taskit.broker.sharded import ShardedBroker
from taskit.dedup import Dedup
from taskit.dependencies import After
from taskit.errors import SerializationError
from taskit.job import (
    Job,
    JobStatus,
    Lease,
    LeaseState,
    Outcome,
    OutcomeKind,
    Progress,
    ProgressUpdate,
    QueueStats,
)
from taskit.limits import LimitSpec
from tests.broker._browse import PAGE, full_pages, listed, walk
from tests.broker._helpers import LONG, make_job, new_queue, outcome
from tests.broker._sharded import shard_id, spread_ids
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

#: Jobs a shard in the spread tests.
EACH = 4
#: A blocking reserve that is never meant to run out; the test fails long before it would.
BLOCK = 10.0
#: How long a woken reserve may take to return: far less than BLOCK.
PROMPT = 3.0


def sharded(harness: BrokerHarness) -> ShardedBroker:
    assert isinstance(harness.broker, ShardedBroker)
    return harness.broker


def spread(broker: ShardedBroker, queue: str, per_shard: int = EACH, **fields: object) -> list[Job]:
    """``per_shard`` jobs of ``queue`` in every shard, the shards taking turns."""
    return [
        msgspec.structs.replace(make_job(queue, job_id=job_id), **fields)
        for job_id in spread_ids(broker, per_shard * broker.count)
    ]


def shard_of_lease(held: Lease) -> int:
    """The shard a sharded broker's lease token names (``"<k>/<token>"``)."""
    head, slash, _ = held.token.partition("/")
    assert slash, held.token
    return int(head)


def by_shard(broker: ShardedBroker, ids: list[str]) -> dict[int, list[str]]:
    """``ids`` grouped by the shard of each id, each group in the order given."""
    groups: dict[int, list[str]] = {k: [] for k in range(broker.count)}
    for job_id in ids:
        groups[shard_of(job_id, broker.count)].append(job_id)
    return groups


async def drain(broker: Broker, queue: str, count: int) -> list[list[Lease]]:
    """Every reserve call's leases until ``queue`` has nothing ready."""
    calls: list[list[Lease]] = []
    while leases := await broker.reserve([queue], count=count, lease=LONG, timeout=0):
        calls.append(leases)
    return calls


# -- reserve -------------------------------------------------------------------------------------
async def test_every_job_is_reserved_exactly_once_and_a_reserve_fills_count_across_shards(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    jobs = spread(broker, q)  # 4 a shard: no shard alone fills a reserve of 5
    await broker.enqueue(jobs)

    calls = await drain(broker, q, count=5)

    assert [len(leases) for leases in calls] == [5, 5, 2]
    taken = [held.job.id for leases in calls for held in leases]
    assert sorted(taken) == sorted(job.id for job in jobs)  # each once
    assert all(
        shard_of_lease(held) == shard_of(held.job.id, broker.count)
        for leases in calls
        for held in leases
    )
    assert (await broker.stats([q]))[q].running == len(jobs)


async def test_each_shards_jobs_are_reserved_in_their_order(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    priorities = [0, 5, 0, 9, 5, 0]
    jobs = [
        make_job(q, job_id=job_id, priority=priorities[i % len(priorities)])
        for i, job_id in enumerate(spread_ids(broker, 6 * broker.count))
    ]
    for job in jobs:
        await broker.enqueue([job])

    calls = await drain(broker, q, count=2)

    taken = [held.job.id for leases in calls for held in leases]
    assert sorted(taken) == sorted(job.id for job in jobs)
    expected = by_shard(
        broker, [job.id for job in sorted(jobs, key=lambda job: -job.priority)]
    )  # higher priority first, FIFO within one (a stable sort)
    assert by_shard(broker, taken) == expected


async def test_a_blocked_reserve_takes_a_job_of_any_shard(sharded_harness: BrokerHarness) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    for k in range(broker.count):
        got: list[Lease] = []

        async def consume(got: list[Lease] = got) -> None:
            got.extend(await broker.reserve([q], count=1, lease=LONG, timeout=BLOCK))

        with anyio.fail_after(PROMPT * 2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                [job] = await broker.enqueue([make_job(q, job_id=shard_id(broker, shard=k))])

        assert [(held.job.id, shard_of_lease(held)) for held in got] == [(job.id, k)]


async def test_a_blocked_reserve_keeps_count_and_hands_back_what_other_shards_took(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    jobs = spread(broker, q, per_shard=1)  # one job a shard, stored by one enqueue
    got: list[Lease] = []

    async def consume() -> None:
        got.extend(await broker.reserve([q], count=1, lease=LONG, timeout=BLOCK))

    with anyio.fail_after(PROMPT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            await broker.enqueue(jobs)

    assert len(got) == 1
    rest = [job.id for job in jobs if job.id != got[0].job.id]
    for job_id in rest:  # handed back at once: PENDING, the attempt refunded
        stored = await broker.get(job_id)
        assert stored is not None
        assert (stored.status, stored.attempts) == (JobStatus.PENDING, 0)
    again = await broker.reserve([q], count=10, lease=LONG, timeout=0)
    assert sorted(held.job.id for held in again) == sorted(rest)


async def test_reclaim_takes_expired_leases_of_every_shard(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    jobs = spread(broker, q, per_shard=1)
    await broker.enqueue(jobs)
    held = await broker.reserve([q], count=len(jobs), lease=0.2, timeout=0)
    assert len(held) == len(jobs)

    await sharded_harness.advance(0.3)
    reclaimed = await broker.reclaim([q], lease=LONG)

    assert sorted(r.job.id for r in reclaimed) == sorted(job.id for job in jobs)
    assert {shard_of_lease(r) for r in reclaimed} == set(range(broker.count))
    old = {h.job.id: h.token for h in held}
    assert all(r.token != old[r.job.id] for r in reclaimed)
    assert await broker.settle([outcome(r, OutcomeKind.COMPLETE) for r in reclaimed]) == [
        True
    ] * len(jobs)


# -- leases name their shard ---------------------------------------------------------------------
async def test_a_token_of_another_shard_or_a_made_up_one_is_stale(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    await broker.enqueue([make_job(q, job_id=shard_id(broker, shard=1))])
    [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
    k, _, inner = held.token.partition("/")
    assert k == "1"
    forged = [
        f"0/{inner}",  # the right token, another shard
        f"2/{inner}",
        f"{broker.count}/{inner}",  # no such shard
        f"99/{inner}",
        inner,  # the shard's own token, not named
        f"1/x{inner}",  # not the shard's token
        "1/",
        "/",
        "",
        "x/y",
        f"-1/{inner}",
    ]
    leases = [msgspec.structs.replace(held, token=token) for token in forged]

    assert await broker.extend(leases, lease=LONG) == [LeaseState.LOST] * len(forged)
    progress = Progress(updated_at=held.job.created_at, fraction=0.5)
    updates = [ProgressUpdate(held.job.id, token, progress) for token in forged]
    assert await broker.set_progress(updates) == [False] * len(forged)
    outcomes = [
        Outcome(job_id=held.job.id, token=token, kind=OutcomeKind.COMPLETE) for token in forged
    ]
    assert await broker.settle(outcomes) == [False] * len(forged)

    stored = await broker.get(held.job.id)
    assert stored is not None
    assert (stored.status, stored.progress) == (JobStatus.RUNNING, None)
    assert await broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]


# -- enqueue -------------------------------------------------------------------------------------
async def test_a_batch_with_one_bad_job_stores_nothing_on_any_shard(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    good = spread(broker, q, per_shard=2)
    bad_group = msgspec.structs.replace(make_job(q), group="a\0b")
    unencodable = make_job(q, metadata={"handle": object()})
    orphan = msgspec.structs.replace(make_job(q), after=After(jobs=(f"missing-{q}",)))

    with pytest.raises(ValueError, match="NUL"):
        await broker.enqueue([*good, bad_group])
    with pytest.raises(SerializationError):
        await broker.enqueue([*good, unencodable])
    with pytest.raises(ValueError, match="needs a workflow id"):
        await broker.enqueue([*good, orphan])
    with pytest.raises(ValueError, match="delays"):
        await broker.enqueue(good, delays=[0.0])

    for job in good:
        assert await broker.get(job.id) is None
    assert (await broker.stats([q]))[q] == QueueStats()
    for shard in broker.shards:
        assert (await shard.stats([q]))[q] == QueueStats()


async def test_an_enqueue_retried_with_the_same_ids_stores_nothing_twice(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    jobs = spread(broker, q, per_shard=2)
    await broker.enqueue(jobs)

    again = await broker.enqueue(jobs)

    assert [job.id for job in again] == [job.id for job in jobs]
    assert all(job.duplicate for job in again)
    assert (await broker.stats([q]))[q].queued == len(jobs)


# -- jobs by id, wherever they were placed -------------------------------------------------------
async def test_get_cancel_and_promote_find_a_job_placed_in_the_home_shard(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    limit = f"lim-{uuid.uuid4().hex[:8]}"
    await broker.set_limits({limit: LimitSpec(concurrency=5)})
    away = [shard_id(broker, shard=1), shard_id(broker, shard=2), shard_id(broker, shard=2)]
    limited = msgspec.structs.replace(make_job(q, job_id=away[0]), limits=(limit,))
    deduped = msgspec.structs.replace(
        make_job(q, job_id=away[1]), dedup=Dedup("throttle", f"k-{q}", 30.0)
    )
    flow = msgspec.structs.replace(make_job(q, job_id=away[2]), workflow=f"wf-{q}")
    await broker.enqueue([limited, deduped])
    await broker.enqueue([flow], delays=[3600.0])

    home = broker.shards[HOME]
    for job in (limited, deduped, flow):
        assert shard_of(job.id, broker.count) != HOME
        assert await home.get(job.id) is not None  # placed in the home shard
        found = await broker.get(job.id)
        assert found is not None
        assert found.id == job.id
    assert await broker.promote(flow.id)
    assert await broker.cancel(limited.id)
    assert await broker.cancel(deduped.id)
    assert await broker.cancel(flow.id)
    for job in (limited, deduped, flow):
        assert (await broker.get(job.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    assert await broker.cancel(f"missing-{q}") is False
    assert await broker.promote(f"missing-{q}") is False


async def test_one_id_with_limits_and_without_is_two_jobs_in_two_shards(
    sharded_harness: BrokerHarness,
) -> None:
    """A unique id is kept in place within a shard: enqueued once with limits (the home shard)
    and once without (the shard of its id), the same id is two jobs."""
    broker, q = sharded(sharded_harness), new_queue()
    limit = f"lim-{uuid.uuid4().hex[:8]}"
    await broker.set_limits({limit: LimitSpec(concurrency=5)})
    job_id = shard_id(broker, shard=1)
    plain = make_job(q, "plain", job_id=job_id)
    limited = msgspec.structs.replace(make_job(q, "limited", job_id=job_id), limits=(limit,))

    [first] = await broker.enqueue([plain])
    [second] = await broker.enqueue([limited])

    assert not first.duplicate
    assert not second.duplicate
    assert (await broker.stats([q]))[q].queued == 2
    assert (await broker.shards[1].get(job_id)).args == ("plain",)  # type: ignore[union-attr]
    assert (await broker.shards[HOME].get(job_id)).args == ("limited",)  # type: ignore[union-attr]
    held = await broker.reserve([q], count=10, lease=LONG, timeout=0)
    assert sorted(h.job.args[0] for h in held) == ["limited", "plain"]


async def test_a_workflow_cannot_wait_for_plain_jobs_of_two_shards(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    one, two = (
        make_job(q, job_id=shard_id(broker, shard=1)),
        make_job(q, job_id=shard_id(broker, shard=2)),
    )
    await broker.enqueue([one, two])
    waiting = msgspec.structs.replace(
        make_job(q), workflow=f"wf-{q}", after=After(jobs=(one.id, two.id))
    )

    with pytest.raises(ValueError, match="different shards"):
        await broker.enqueue([waiting])

    assert await broker.get(waiting.id) is None
    assert await broker.workflow(f"wf-{q}") is None
    # Jobs of one shard are adopted, and the workflow lives with them.
    alone = msgspec.structs.replace(make_job(q), workflow=f"wf-{q}", after=After(jobs=(two.id,)))
    [stored] = await broker.enqueue([alone])
    assert stored.status is JobStatus.DEFERRED
    assert await broker.shards[2].workflow(f"wf-{q}") is not None


# -- counting, listing, admin --------------------------------------------------------------------
async def test_stats_and_counts_add_the_shards_up(sharded_harness: BrokerHarness) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    jobs = spread(broker, q)
    await broker.enqueue(jobs[:8])
    await broker.enqueue(jobs[8:], delays=[3600.0] * (len(jobs) - 8))
    held = await broker.reserve([q], count=5, lease=LONG, timeout=0)
    ends = [OutcomeKind.COMPLETE, OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.DEAD_LETTER]
    assert (
        await broker.settle(
            [outcome(h, kind, error="x") for h, kind in zip(held, ends, strict=False)]
        )
        == [True] * 4
    )

    stats = (await broker.stats([q]))[q]
    each = [(await shard.stats([q]))[q] for shard in broker.shards]

    assert (stats.queued, stats.scheduled, stats.running, stats.dead) == (3, 4, 1, 1)
    for field in QueueStats.__struct_fields__:
        assert getattr(stats, field) == sum(getattr(s, field) for s in each), field
    counts = await broker.counts(0.0, queues=[q])
    assert sum(c.enqueued for c in counts) == len(jobs)
    assert sum(c.completed for c in counts) == 2
    assert sum(c.dead for c in counts) == 1
    minutes = [(c.minute, c.queue) for c in counts]
    assert minutes == sorted(set(minutes))  # one row a minute and queue, in order


async def test_a_walk_lists_each_job_once_shard_by_shard(sharded_harness: BrokerHarness) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    jobs = spread(broker, q, per_shard=EACH)
    jobs.append(make_job(q, job_id=shard_id(broker, shard=0)))  # 13: no page ends a shard's part
    await broker.enqueue(jobs)

    pages = await walk(broker, q, Listing.QUEUED)

    got = listed(pages)
    parts = by_shard(broker, [job.id for job in jobs])  # FIFO within each shard
    assert got == [job_id for k in range(broker.count) for job_id in parts[k]]
    full_pages(broker, pages, len(jobs))
    assert all(page.scanned >= len(page.jobs) for page in pages)


async def test_a_walk_ending_a_page_at_a_shards_end_lists_each_job_once(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    jobs = [make_job(q, job_id=shard_id(broker, shard=0)) for _ in range(PAGE)]
    await broker.enqueue(jobs)

    pages = await walk(broker, q, Listing.QUEUED)

    assert listed(pages) == [job.id for job in jobs]
    assert [len(page.jobs) for page in pages] in ([PAGE], [PAGE, 0])
    cursor = pages[0].cursor
    if cursor is not None:  # the start of the next shard's part: still bound to its listing
        with pytest.raises(ValueError, match="cursor"):
            await broker.list_jobs(q, Listing.SCHEDULED, cursor=cursor)
        with pytest.raises(ValueError, match="cursor"):
            await broker.list_jobs(new_queue(), Listing.QUEUED, cursor=cursor)


async def test_a_filtered_walk_over_shards_keeps_each_page_to_the_scan_budget(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    hay = [make_job(q, "hay", job_id=job_id) for job_id in spread_ids(broker, SCAN_BUDGET + 10)]
    needle = make_job(q, "needle", job_id=shard_id(broker, shard=broker.count - 1))
    await broker.enqueue(hay)
    await broker.enqueue([needle])

    pages = await walk(broker, q, Listing.QUEUED, limit=10, text="needle")

    assert listed(pages) == [needle.id]
    assert all(page.scanned <= SCAN_BUDGET for page in pages)
    assert sum(page.scanned for page in pages) >= len(hay) + 1  # every shard's part examined


async def test_dead_letters_are_listed_shard_by_shard_and_offset_across_them(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    jobs = spread(broker, q, per_shard=2)
    for job in jobs:  # one at a time: each shard's dead letters in this order
        await broker.enqueue([job])
        [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
        assert held.job.id == job.id
        assert await broker.settle([outcome(held, OutcomeKind.DEAD_LETTER, error="x")]) == [True]

    letters = [job.id for job in await broker.dead_letters(q)]

    parts = by_shard(broker, [job.id for job in jobs])
    assert letters == [job_id for k in range(broker.count) for job_id in parts[k]]
    for offset in range(len(jobs) + 1):
        page = await broker.dead_letters(q, limit=2, offset=offset)
        assert [job.id for job in page] == letters[offset : offset + 2], offset


async def test_admin_calls_act_on_every_shard(sharded_harness: BrokerHarness) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    dead = spread(broker, q, per_shard=1)
    await broker.enqueue(dead)
    held = await broker.reserve([q], count=len(dead), lease=LONG, timeout=0)
    assert await broker.settle([outcome(h, OutcomeKind.DEAD_LETTER, error="x") for h in held]) == [
        True
    ] * len(dead)
    waiting = spread(broker, q, per_shard=2)
    await broker.enqueue(waiting)

    assert await broker.requeue_dead(q, [dead[0].id, dead[1].id, f"missing-{q}"]) == 2
    assert await broker.purge_dead(q) == len(dead) - 2
    assert await broker.purge(q) == len(waiting) + 2
    for shard in broker.shards:
        stats = (await shard.stats([q]))[q]
        assert (stats.queued, stats.dead) == (0, 0)
    ended = [job.id for job in dead[2:]]
    known = [job_id for job_id in ended if await broker.get(job_id) is not None]
    assert await broker.forget([*known, f"missing-{q}"]) == len(known)
    for job_id in known:
        assert await broker.get(job_id) is None


async def test_a_pause_holds_on_every_shard(sharded_harness: BrokerHarness) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    jobs = spread(broker, q, per_shard=1)
    await broker.enqueue(jobs)

    assert await broker.pause_queue(q) is True
    assert all([q in await shard.paused_queues() for shard in broker.shards])
    assert await broker.reserve([q], count=10, lease=LONG, timeout=0) == []
    assert await broker.reserve([q], count=10, lease=LONG, timeout=0.2) == []
    assert (await broker.stats([q]))[q].queued == len(jobs)

    assert await broker.resume_queue(q) is True
    assert not any([q in await shard.paused_queues() for shard in broker.shards])
    held = await broker.reserve([q], count=10, lease=LONG, timeout=0)
    assert sorted(h.job.id for h in held) == sorted(job.id for job in jobs)


# -- workflows: each lives in one shard ----------------------------------------------------------
def waits_for(queue: str, workflow: str, *parents: str, job_id: str | None = None) -> Job:
    return msgspec.structs.replace(
        make_job(queue, job_id=job_id), workflow=workflow, after=After(jobs=parents)
    )


async def test_plain_jobs_a_workflow_waits_for_join_it_from_the_same_batch(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q, wf = sharded(sharded_harness), new_queue(), f"wf-{uuid.uuid4().hex[:8]}"
    parents = [make_job(q, job_id=shard_id(broker, shard=k)) for k in range(1, broker.count)]
    child = waits_for(q, wf, *(p.id for p in parents), job_id=shard_id(broker, shard=1))

    stored = await broker.enqueue([*parents, child])

    assert [job.status for job in stored] == [JobStatus.PENDING] * len(parents) + [
        JobStatus.DEFERRED
    ]
    state = await broker.workflow(wf)
    assert state is not None
    assert [node.id for node in state.nodes] == [*(p.id for p in parents), child.id]
    for job in [*parents, child]:  # all in the new workflow's shard, the home shard
        assert await broker.shards[HOME].get(job.id) is not None
    held = await broker.reserve([q], count=10, lease=LONG, timeout=0)
    assert sorted(h.job.id for h in held) == sorted(p.id for p in parents)
    assert await broker.settle([outcome(h, OutcomeKind.COMPLETE) for h in held]) == [True] * len(
        held
    )
    [released] = await broker.reserve([q], count=10, lease=LONG, timeout=0)
    assert released.job.id == child.id


async def test_a_refused_workflow_job_stores_none_of_the_batch(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q = sharded(sharded_harness), new_queue()
    good = spread(broker, q, per_shard=2)
    unknown = waits_for(q, f"wf-{q}", f"missing-{q}")

    with pytest.raises(ValueError, match="unknown"):
        await broker.enqueue([*good, unknown])

    for job in [*good, unknown]:
        assert await broker.get(job.id) is None
    assert (await broker.stats([q]))[q] == QueueStats()


async def test_a_workflow_waits_only_for_stored_jobs_of_its_own_shard(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q, wf = sharded(sharded_harness), new_queue(), f"wf-{uuid.uuid4().hex[:8]}"
    here, away = (
        make_job(q, job_id=shard_id(broker, shard=1)),
        make_job(q, job_id=shard_id(broker, shard=2)),
    )
    await broker.enqueue([here, away])
    [first] = await broker.enqueue([waits_for(q, wf, here.id)])  # adopts ``here``: shard 1
    assert await broker.shards[1].workflow(wf) is not None

    late = waits_for(q, wf, away.id)
    with pytest.raises(ValueError, match="other shards"):
        await broker.enqueue([late])

    assert await broker.get(late.id) is None
    state = await broker.workflow(wf)
    assert state is not None
    assert [node.id for node in state.nodes] == [here.id, first.id]


async def test_a_job_with_limits_or_dedup_cannot_join_a_workflow_outside_home(
    sharded_harness: BrokerHarness,
) -> None:
    broker, q, wf = sharded(sharded_harness), new_queue(), f"wf-{uuid.uuid4().hex[:8]}"
    limit = f"lim-{uuid.uuid4().hex[:8]}"
    await broker.set_limits({limit: LimitSpec(concurrency=5)})
    stored = make_job(q, job_id=shard_id(broker, shard=2))
    await broker.enqueue([stored])
    limited = msgspec.structs.replace(waits_for(q, wf, stored.id), limits=(limit,))
    deduped = msgspec.structs.replace(make_job(q), dedup=Dedup("throttle", f"k-{q}", 30.0))

    with pytest.raises(ValueError, match="limits"):
        await broker.enqueue([limited])
    with pytest.raises(ValueError, match="throttle window"):  # a plain parent it adopts
        await broker.enqueue([deduped, waits_for(q, wf, stored.id, deduped.id)])

    assert await broker.get(limited.id) is None
    assert await broker.get(deduped.id) is None
    assert await broker.workflow(wf) is None
