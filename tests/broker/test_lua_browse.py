"""Browsing on Redis, the parts the conformance suite cannot see: the finished-job indexes
written on every path that keeps a done key (and only there), their trimming, the per-minute
counts hashes (fields, expiry), the cursors of the FIFO list and of a sorted set whose cursor
member left, and the cost of a page, the same whatever the size of the state."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from taskit.broker.browse import COUNTS_KEPT, RUN_TIME_BOUNDS, Listing
from taskit.broker.redis import RedisBroker
from taskit.job import Job, JobResult, Lease, Outcome, OutcomeKind
from tests.broker._browse import listed, named, take_each, walk
from tests.broker._helpers import LONG, make_job
from tests.broker._redis_kinds import OwnRedisServer, RedisHarness
from tests.broker.test_lua_scripts import anyio_backend
from tests.broker.test_lua_workflows import node

__all__ = ["anyio_backend"]  # the fixture, re-used: these tests run on asyncio only

pytestmark = pytest.mark.anyio


def end(lease: Lease, kind: OutcomeKind, **fields: object) -> Outcome:
    if kind is OutcomeKind.COMPLETE:
        fields.setdefault("result", JobResult(success=True, value=1))
    if kind is OutcomeKind.FAIL:
        fields.setdefault("error", "boom")
    return Outcome(job_id=lease.job.id, token=lease.token, kind=kind, **fields)  # type: ignore[arg-type]


async def index(rh: RedisHarness, queue: str, kind: str) -> dict[str, float]:
    got = await rh.client.zrange(rh.broker.keys.queue(queue, kind), 0, -1, withscores=True)
    return {member.decode(): score for member, score in got}


async def server_ms(rh: RedisHarness) -> int:
    seconds, micros = await rh.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_each_settled_end_with_a_kept_record_is_indexed_by_its_end(
    rh: RedisHarness,
) -> None:
    b = rh.broker
    jobs = [
        named(rh.broker, "q", name) for name in ("done", "failed", "cancelled", "expired", "unkept")
    ]
    await b.enqueue(jobs)
    held = await take_each(b, "q", len(jobs))
    before = await server_ms(rh)
    await b.settle([
        end(held["q-done"], OutcomeKind.COMPLETE),
        end(held["q-failed"], OutcomeKind.FAIL),
        end(held["q-cancelled"], OutcomeKind.CANCEL),
        # what the worker settles for a job not started by its expires_at
        end(held["q-expired"], OutcomeKind.CANCEL, error="expired", error_type="Expired"),
        end(held["q-unkept"], OutcomeKind.COMPLETE, result_ttl=0.0),  # no record: not listed
    ])  # fmt: skip
    after = await server_ms(rh)

    assert list(await index(rh, "q", "completed")) == ["q-done"]
    assert list(await index(rh, "q", "failed")) == ["q-failed"]
    cancelled = await index(rh, "q", "cancelled")
    assert sorted(cancelled) == ["q-cancelled", "q-expired"]
    assert all(before <= score <= after for score in cancelled.values())


async def test_a_cancel_of_a_waiting_job_is_indexed(rh: RedisHarness) -> None:
    job = named(rh.broker, "q", "waiting")
    await rh.broker.enqueue([job])
    assert await rh.broker.cancel(job.id)
    assert list(await index(rh, "q", "cancelled")) == [job.id]
    assert listed(await walk(rh.broker, "q", Listing.CANCELLED)) == [job.id]


async def test_a_workflow_cascade_indexes_the_jobs_it_ends_in_their_queues(
    rh: RedisHarness,
) -> None:
    """The ends a cascade makes (in other queues than the script was given) are indexed too."""
    b = rh.broker
    await b.enqueue([node("qa", "a"), node("qb", "b", "a"), node("qc", "c", "b")])
    [lease] = await b.reserve(["qa"], count=1, lease=LONG, timeout=0)
    await b.settle([end(lease, OutcomeKind.FAIL)])

    assert list(await index(rh, "qa", "failed")) == ["a"]
    assert list(await index(rh, "qb", "failed")) == ["b"]
    assert list(await index(rh, "qc", "failed")) == ["c"]
    assert listed(await walk(b, "qc", Listing.FAILED)) == ["c"]


async def test_cancelling_a_workflow_indexes_its_cancelled_nodes(rh: RedisHarness) -> None:
    b = rh.broker
    await b.enqueue([node("qa", "a", workflow="wf-c"), node("qb", "b", "a", workflow="wf-c")])
    assert await b.cancel_workflow("wf-c") == 2
    assert list(await index(rh, "qa", "cancelled")) == ["a"]
    assert list(await index(rh, "qb", "cancelled")) == ["b"]


async def test_an_index_is_trimmed_of_ends_older_than_the_result_ttl_as_it_is_written(
    rh: RedisHarness,
) -> None:
    b, k = rh.broker, rh.broker.keys
    now = await server_ms(rh)
    ttl_ms = 60_000  # the harness's broker keeps results 60 s
    await rh.client.zadd(k.queue("q", "completed"), {"old": now - ttl_ms - 5_000, "young": now})
    await b.enqueue([named(rh.broker, "q", "new")])
    [lease] = await b.reserve(["q"], count=1, lease=LONG, timeout=0)
    await b.settle([end(lease, OutcomeKind.COMPLETE)])

    assert sorted(await index(rh, "q", "completed")) == ["q-new", "young"]


async def test_a_listing_drops_the_entries_whose_record_is_gone(rh: RedisHarness) -> None:
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([named(rh.broker, "q", "a"), named(rh.broker, "q", "b")])
    held = await take_each(b, "q", 2)
    await b.settle([end(lease, OutcomeKind.COMPLETE) for lease in held.values()])
    await rh.client.delete(k.done("q-a"))  # as if its own result TTL ran out

    assert listed(await walk(b, "q", Listing.COMPLETED)) == ["q-b"]
    assert list(await index(rh, "q", "completed")) == ["q-b"]


async def test_forget_removes_index_entries_and_dead_letters(rh: RedisHarness) -> None:
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([named(rh.broker, "q", "a"), named(rh.broker, "q", "d")])
    held = await take_each(b, "q", 2)
    await b.settle([
        end(held["q-a"], OutcomeKind.COMPLETE),
        end(held["q-d"], OutcomeKind.DEAD_LETTER, error="x"),
    ])  # fmt: skip
    assert await b.forget(["q-a", "q-d", "unknown"]) == 2
    assert await index(rh, "q", "completed") == {}
    assert await rh.client.zcard(k.dead("q")) == 0
    assert await rh.client.hexists(k.jobs, "q-d") == 0
    assert await rh.client.exists(k.done("q-a")) == 0


# -- counts -------------------------------------------------------------------------------------
def test_the_scripts_run_time_bounds_are_the_contracts() -> None:
    text = resources.files("taskit.broker.redis").joinpath("lua/_counts.lua").read_text("utf-8")
    found = re.search(r"RUN_BOUNDS_MS = \{([^}]*)\}", text)
    assert found is not None
    bounds = [float(v) for v in found.group(1).replace("\n", " ").split(",")]
    assert bounds == [bound * 1000 for bound in RUN_TIME_BOUNDS]
    assert f"COUNTS_TTL = {COUNTS_KEPT} + 120" in text


async def test_counts_go_to_the_hash_of_the_servers_minute_with_an_expiry(
    rh: RedisHarness,
) -> None:
    b, k = rh.broker, rh.broker.keys
    await b.enqueue(
        [named(rh.broker, "q", "a"), named(rh.broker, "q", "b"), named(rh.broker, "q", "c")]
    )
    held = await take_each(b, "q", 3)
    await b.settle([
        end(held["q-a"], OutcomeKind.COMPLETE),
        end(held["q-b"], OutcomeKind.RETRY, delay=60.0),
        end(held["q-c"], OutcomeKind.RELEASE),  # not counted
    ])  # fmt: skip
    minute = (await server_ms(rh)) // 60_000 * 60
    fields = await rh.client.hgetall(k.counts(minute))
    if not fields:  # the minute turned between the settle and the clock read
        minute -= 60
        fields = await rh.client.hgetall(k.counts(minute))

    runs = {f: v for f, v in fields.items() if f.startswith(b"q\0t")}
    assert {f: v for f, v in fields.items() if f not in runs} == {
        b"q\0e": b"3",
        b"q\0c": b"1",
        b"q\0r": b"1",
    }
    assert sum(int(v) for v in runs.values()) == 2  # one run each, for complete and retry
    assert all(int(f[3:]) <= len(RUN_TIME_BOUNDS) for f in runs)
    # it expires COUNTS_KEPT + 120 s after its minute ends: the same for every write of it
    assert COUNTS_KEPT + 120 <= await rh.client.ttl(k.counts(minute)) <= COUNTS_KEPT + 180


async def test_a_settle_batch_writes_one_field_per_distinct_count(rh: RedisHarness) -> None:
    """Counts are gathered per call: 50 completes add 50 to one field, not 50 writes."""
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([named(rh.broker, "q", str(i)) for i in range(50)])
    held = await take_each(b, "q", 50)
    await b.settle([end(lease, OutcomeKind.COMPLETE) for lease in held.values()])
    counted = await b.counts(0)
    assert sum(c.completed for c in counted) == 50
    assert sum(sum(c.runs) for c in counted) == 50
    assert await rh.client.exists(k.counts(counted[0].minute)) == 1


# -- cursors ------------------------------------------------------------------------------------
async def test_a_fifo_walk_goes_on_after_reserves_took_its_head(rh: RedisHarness) -> None:
    b = rh.broker
    await b.enqueue([named(rh.broker, "q", f"{i:02}") for i in range(10)])
    first = await b.list_jobs("q", Listing.QUEUED, limit=3)
    assert [j.id for j in first.jobs] == ["q-00", "q-01", "q-02"]
    await b.reserve(["q"], count=2, lease=LONG, timeout=0)  # q-00, q-01: before the cursor
    second = await b.list_jobs("q", Listing.QUEUED, cursor=first.cursor, limit=3)
    assert [j.id for j in second.jobs] == ["q-03", "q-04", "q-05"]
    await b.reserve(["q"], count=4, lease=LONG, timeout=0)  # up to q-05: the cursor's job too
    third = await b.list_jobs("q", Listing.QUEUED, cursor=second.cursor, limit=3)
    assert [j.id for j in third.jobs] == ["q-06", "q-07", "q-08"]


async def test_a_sorted_set_walk_resumes_when_its_cursor_job_left(rh: RedisHarness) -> None:
    """Jobs due at the same time share a score: the walk resumes by member after one that is
    gone (a binary search among the members of that score)."""
    b = rh.broker
    due = datetime.now(UTC) + timedelta(hours=1)
    ids = [f"q-{i:02}" for i in range(9)]
    await b.enqueue([make_job("q", job_id=i, scheduled_at=due) for i in ids])
    first = await b.list_jobs("q", Listing.SCHEDULED, limit=4)
    assert [j.id for j in first.jobs] == ids[:4]
    assert await b.cancel("q-03")  # the cursor's job
    assert await b.cancel("q-02")
    rest = await b.list_jobs("q", Listing.SCHEDULED, cursor=first.cursor, limit=10)
    assert [j.id for j in rest.jobs] == ids[4:]
    assert rest.cursor is None


async def test_queued_walks_priorities_then_fifo_then_groups_then_low(rh: RedisHarness) -> None:
    b = rh.broker
    jobs: list[Job] = [
        named(rh.broker, "q", "low", priority=-5),
        named(rh.broker, "q", "plain"),
        named(rh.broker, "q", "grouped", group="g"),
        named(rh.broker, "q", "high", priority=5),
    ]
    await b.enqueue(jobs)
    pages = await walk(b, "q", Listing.QUEUED, limit=1)
    assert listed(pages) == ["q-high", "q-plain", "q-grouped", "q-low"]


async def test_deferred_jobs_are_walked_per_queue(rh: RedisHarness) -> None:
    b = rh.broker
    await b.enqueue([node("qa", "a"), *(node("qb", f"b{i}", "a") for i in range(5))])
    await b.enqueue([node("qc", "c", "a")])
    assert sorted(listed(await walk(b, "qb", Listing.DEFERRED, limit=2))) == [
        f"b{i}" for i in range(5)
    ]
    assert listed(await walk(b, "qc", Listing.DEFERRED)) == ["c"]


# -- cost -----------------------------------------------------------------------------------------
async def _commands(broker: RedisBroker) -> int:
    """Commands the server ran since the last reset (scripts' own included), less the
    EVALSHA calls and the reading of the statistics themselves."""
    raw = await broker._execute("INFO", "commandstats")
    total = 0
    for name, calls in re.findall(rb"cmdstat_(\w+(?:\|\w+)?):calls=(\d+)", raw):
        if name not in (b"info", b"config|resetstat", b"config", b"evalsha"):
            total += int(calls)
    return total


async def _page_cost(broker: RedisBroker, queue: str, listing: Listing) -> int:
    """The commands of the second page of a walk (a page from a cursor)."""
    first = await broker.list_jobs(queue, listing, limit=20)
    assert first.cursor is not None
    await broker._execute("CONFIG", "RESETSTAT")
    page = await broker.list_jobs(queue, listing, cursor=first.cursor, limit=20)
    assert len(page.jobs) == 20
    return await _commands(broker)


async def _seed(broker: RedisBroker, queue: str, n: int) -> None:
    """``n`` jobs in each of QUEUED, SCHEDULED, DEAD and COMPLETED."""
    later = datetime.now(UTC) + timedelta(hours=1)
    for start in range(0, n, 500):
        size = min(500, n - start)
        done = [make_job(f"{queue}-work") for _ in range(2 * size)]
        await broker.enqueue(done)
        held = await broker.reserve([f"{queue}-work"], count=2 * size, lease=LONG, timeout=0)
        ended = [end(h, OutcomeKind.COMPLETE) for h in held[:size]]
        ended += [end(h, OutcomeKind.DEAD_LETTER, error="x") for h in held[size:]]
        await broker.settle(ended)
        await broker.enqueue([make_job(f"{queue}-work") for _ in range(size)])
        await broker.enqueue([make_job(f"{queue}-work", scheduled_at=later) for _ in range(size)])


async def test_a_page_costs_the_same_with_100_or_5000_jobs_in_the_state() -> None:
    server = OwnRedisServer()
    server.start()
    broker = RedisBroker(server.url, result_ttl=3600)
    try:
        costs: dict[int, dict[Listing, int]] = {}
        for n in (100, 5000):
            queue = f"n{n}"
            await _seed(broker, queue, n)
            listings = (Listing.QUEUED, Listing.SCHEDULED, Listing.DEAD, Listing.COMPLETED)
            costs[n] = {ls: await _page_cost(broker, f"{queue}-work", ls) for ls in listings}
        assert costs[100] == costs[5000]
        assert all(cost < 200 for cost in costs[5000].values())
    finally:
        await broker.close()
        server.stop()


async def test_the_counts_hash_is_named_from_the_brokers_tag(rh: RedisHarness) -> None:
    """The one key besides the workflow ones that a script names itself (its minute is the
    server's): under the broker's hash tag, so in the same Cluster slot as every key passed."""
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([named(rh.broker, "q", "a")])
    keys = [key.decode() async for key in rh.client.scan_iter(match=k.tag + ":counts:*")]
    assert len(keys) == 1
    assert int(keys[0].rpartition(":")[2]) % 60 == 0
    text = resources.files("taskit.broker.redis").joinpath("lua/_counts.lua").read_text("utf-8")
    assert re.findall(r"(\w+) \.\. ':counts:'", text) == ["tag"]


async def test_an_index_expires_with_the_records_it_lists(rh: RedisHarness) -> None:
    """A queue where nothing ends any more keeps no index: it expires the broker's result TTL
    after its last write, as the last record it listed does."""
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([named(rh.broker, "q", "a")])
    [lease] = await b.reserve(["q"], count=1, lease=LONG, timeout=0)
    await b.settle([end(lease, OutcomeKind.COMPLETE)])
    assert 0 < await rh.client.pttl(k.queue("q", "completed")) <= 60_000
    assert 0 < await rh.client.pttl(k.done("q-a")) <= 60_000
