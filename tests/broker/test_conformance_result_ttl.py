"""Broker conformance: a job's own ``result_ttl`` (guide: "Result retention per job").

A job that ends COMPLETED, FAILED or CANCELLED (by its outcome, by ``cancel`` or by ``reclaim``)
is kept for its own TTL, else the broker's (60 s in this harness; ten minutes for a broker given
none, ``DEFAULT_RESULT_TTL``); 0 keeps no record at all. A
dead letter ignores it: kept until requeued or purged. Unique ids follow the record: once it is
gone, an enqueue of the same id stores a new job. The Redis tests at the end call the settle
script and build its request directly.
"""

from __future__ import annotations

import msgspec
import pytest

from taskit.broker.base import Broker
from taskit.broker.redis import requests
from taskit.config import DEFAULT_RESULT_TTL, Settings
from taskit.job import Job, JobResult, JobStatus, Lease, Outcome, OutcomeKind
from tests.broker import test_lua_scripts as lua
from tests.broker._helpers import LONG, make_job, new_queue, outcome, reserve_all, status_of
from tests.broker._redis_kinds import SHORT_KINDS, RedisHarness, open_redis_harness
from tests.broker._sharded import SHARDED_MEMORY
from tests.broker.conftest import BrokerHarness, open_harness

pytestmark = pytest.mark.anyio

SHORT = 0.3  # seconds: long enough for the settles below, short for the one sleep


def job(queue: str, name: str, ttl: float | None) -> Job:
    return msgspec.structs.replace(make_job(queue, job_id=f"{queue}-{name}"), result_ttl=ttl)


async def leased(broker: Broker, jobs: list[Job], *, lease: float = LONG) -> dict[str, Lease]:
    """Enqueue ``jobs`` and reserve them all; their leases by job id."""
    await broker.enqueue(jobs)
    held = await broker.reserve([jobs[0].queue], count=len(jobs), lease=lease, timeout=0)
    assert len(held) == len(jobs)
    return {lease.job.id: lease for lease in held}


def ending(held: Lease, kind: OutcomeKind) -> Outcome:
    """The outcome ``kind`` for ``held``, carrying its job's TTL as the worker's does."""
    error = None if kind is OutcomeKind.COMPLETE else "x"
    return outcome(held, kind, error=error, result_ttl=held.job.result_ttl)


async def test_each_finished_job_is_kept_for_its_own_ttl_else_the_brokers(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    kinds = [OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.CANCEL]
    short = [job(q, f"short-{kind.value}", SHORT) for kind in kinds]
    kept = [job(q, "long", 3600.0), job(q, "default", None), job(q, "dead", SHORT)]
    held = await leased(broker, [*short, *kept])
    ends = [ending(held[j.id], kind) for j, kind in zip(short, kinds, strict=True)]
    ends += [ending(held[j.id], OutcomeKind.COMPLETE) for j in kept[:2]]
    ends.append(ending(held[kept[2].id], OutcomeKind.DEAD_LETTER))
    settled = await broker.settle(ends)
    assert settled == [True] * 6
    waiting = job(q, "cancelled-waiting", SHORT)  # ended by ``cancel``: its own TTL as well
    await broker.enqueue([waiting])
    assert await broker.cancel(waiting.id)
    assert await status_of(broker, waiting.id) is JobStatus.CANCELLED

    await harness.advance(SHORT + 0.2)

    for gone in [*short, waiting]:
        assert await broker.get(gone.id) is None, gone.id
    assert await status_of(broker, f"{q}-long") is JobStatus.COMPLETED
    assert await status_of(broker, f"{q}-default") is JobStatus.COMPLETED  # the broker's 60 s
    assert await status_of(broker, f"{q}-dead") is JobStatus.DEAD_LETTER  # no TTL for these
    assert [j.id for j in await broker.dead_letters(q)] == [f"{q}-dead"]


async def test_a_ttl_of_zero_keeps_no_record_but_counts_the_job(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    done, failed = job(q, "done", 0.0), job(q, "failed", 0.0)
    held = await leased(broker, [done, failed])
    ok = outcome(
        held[done.id], OutcomeKind.COMPLETE, result=JobResult(success=True), result_ttl=0.0
    )
    bad = outcome(held[failed.id], OutcomeKind.FAIL, error="no", result_ttl=0.0)

    assert await broker.settle([ok, bad]) == [True, True]

    assert await broker.get(done.id) is None
    assert await broker.get(failed.id) is None
    stats = (await broker.stats([q]))[q]
    assert (stats.completed, stats.failed, stats.running, stats.queued) == (1, 1, 0, 0)


async def test_a_reclaimed_job_whose_cancel_was_asked_keeps_its_own_ttl(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    gone, kept = job(q, "gone", 0.0), job(q, "kept", None)
    await leased(broker, [gone, kept], lease=0.05)
    assert await broker.cancel(gone.id)
    assert await broker.cancel(kept.id)  # running: cancel requested

    await harness.advance(0.15)

    assert await broker.reclaim([q], lease=LONG) == []  # both end CANCELLED instead
    assert await broker.get(gone.id) is None
    assert await status_of(broker, kept.id) is JobStatus.CANCELLED


async def test_a_unique_id_is_taken_again_once_its_record_is_gone(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    first = job(q, "unique", 0.0)
    [stored] = await broker.enqueue([first])
    [again] = await broker.enqueue([msgspec.structs.replace(first, result_ttl=5.0)])
    assert again.result_ttl == 0.0  # still waiting: the job stays as it is (unique)
    [held] = await reserve_all(broker, q)
    assert await broker.settle([outcome(held, OutcomeKind.COMPLETE, result_ttl=0.0)]) == [True]
    assert await broker.get(first.id) is None

    [renewed] = await broker.enqueue([msgspec.structs.replace(first, result_ttl=5.0)])

    assert (renewed.status, renewed.attempts, renewed.result_ttl) == (JobStatus.PENDING, 0, 5.0)
    [held] = await reserve_all(broker, q)
    assert held.job.result_ttl == 5.0
    assert await broker.settle([outcome(held, OutcomeKind.COMPLETE, result_ttl=5.0)]) == [True]
    assert await status_of(broker, first.id) is JobStatus.COMPLETED  # kept its new five seconds
    assert stored.id == renewed.id


@pytest.mark.parametrize("ttl", [-1.0, float("nan"), float("inf"), True])
async def test_an_outcome_with_a_bad_ttl_is_refused_as_stale(
    harness: BrokerHarness, ttl: object
) -> None:
    q = new_queue()
    [held] = (await leased(harness.broker, [job(q, "j", None)])).values()

    assert await harness.broker.settle([outcome(held, OutcomeKind.COMPLETE, result_ttl=ttl)]) == [
        False
    ]
    assert await status_of(harness.broker, held.job.id) is JobStatus.RUNNING


# -- the default: a broker given no result_ttl ---------------------------------------------------
async def _end_each_way(broker: Broker, q: str) -> list[str]:
    """A job of ``q`` ended each way with no TTL of its own (completed, failed, cancelled by its
    outcome, cancelled waiting), one with its own hour and one dead letter; their ids."""
    kinds = [OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.CANCEL]
    plain = [job(q, kind.value, None) for kind in kinds]
    held = await leased(broker, [*plain, job(q, "hour", 3600.0), job(q, "dead", None)])
    ends = [ending(held[j.id], kind) for j, kind in zip(plain, kinds, strict=True)]
    ends.append(ending(held[f"{q}-hour"], OutcomeKind.COMPLETE))
    ends.append(ending(held[f"{q}-dead"], OutcomeKind.DEAD_LETTER))
    assert await broker.settle(ends) == [True] * 5
    waiting = job(q, "waiting", None)
    await broker.enqueue([waiting])
    assert await broker.cancel(waiting.id)
    return [j.id for j in plain] + [waiting.id]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("kind", ["memory", "sqlite", SHARDED_MEMORY])
async def test_a_broker_given_no_result_ttl_keeps_finished_jobs_the_default_ten_minutes(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """The in-process brokers on their fake clocks; the Redis broker's done keys below."""
    assert DEFAULT_RESULT_TTL == Settings().result_ttl == 600.0
    async with open_harness(kind, request, result_ttl=None) as made:
        broker, q = made.broker, new_queue()
        ended = await _end_each_way(broker, q)

        await made.advance(DEFAULT_RESULT_TTL - 1)
        for job_id in ended:
            assert await broker.get(job_id) is not None, job_id
        await made.advance(2)

        for job_id in ended:
            assert await broker.get(job_id) is None, job_id
        assert await status_of(broker, f"{q}-hour") is JobStatus.COMPLETED  # its own TTL wins
        assert await status_of(broker, f"{q}-dead") is JobStatus.DEAD_LETTER  # never expires


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("kind", SHORT_KINDS)
async def test_a_redis_broker_given_no_result_ttl_keeps_done_keys_the_default_ten_minutes(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with open_redis_harness(kind, request, result_ttl=None) as rh:
        k, q = rh.broker.keys, new_queue()
        ended = await _end_each_way(rh.broker, q)

        for job_id in ended:
            assert 590_000 < await rh.client.pttl(k.done(job_id)) <= 600_000, job_id
        assert 3_590_000 < await rh.client.pttl(k.done(f"{q}-hour")) <= 3_600_000
        assert await status_of(rh.broker, f"{q}-dead") is JobStatus.DEAD_LETTER


# -- Redis: the settle script and its request --------------------------------------------------
def test_the_settle_request_appends_each_jobs_own_ttl_to_its_outcome() -> None:
    settle = requests.Settle(
        9, [("a", "r1", "complete", "qa", 0, b"", b""), ("b", "r2", "fail", "qa", 0, b"", b"")],
        [1500, None],
    )  # fmt: skip

    assert settle.args() == [
        9,
        1,
        "a",
        "r1 complete 1 0 1500",
        b"",
        b"",
        "b",
        "r2 fail 1 0",
        b"",
        b"",
    ]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_settle_script_keeps_the_done_key_for_the_ttl_it_is_given(
    rh: RedisHarness,
) -> None:
    broker, k, q = rh.broker, rh.broker.keys, new_queue()
    held = await leased(broker, [job(q, "own", 5.0), job(q, "zero", 0.0), job(q, "default", None)])
    applied = await broker.settle(
        [
            outcome(lease, OutcomeKind.COMPLETE, result_ttl=lease.job.result_ttl)
            for lease in held.values()
        ]
    )

    assert applied == [True] * 3
    assert 4_000 < await rh.client.pttl(k.done(f"{q}-own")) <= 5_000
    assert not await rh.client.exists(k.done(f"{q}-zero"))
    assert 59_000 < await rh.client.pttl(k.done(f"{q}-default")) <= 60_000


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_settle_script_reads_the_ttl_after_the_delay_else_argv_1(
    rh: RedisHarness,
) -> None:
    """The script itself, called with the ARGV its header documents (no request object)."""
    k = rh.broker.keys
    for job_id in ("own", "zero", "default"):
        await lua.enqueue(rh, job_id)
    await lua.reserve(rh)  # tokens stem.1, stem.2, stem.3 in enqueue order
    args: list[object] = [60_000, 1]
    for i, (job_id, own) in enumerate([("own", " 5000"), ("zero", " 0"), ("default", "")]):
        args += [job_id, f"stem.{i + 1} complete 1 0{own}", "", ""]

    settled = await lua.run(rh, "settle", lua.settle_keys(k, "own", "zero", "default"), args)

    assert settled == [1, 1, 1]
    assert 4_000 < await rh.client.pttl(k.done("own")) <= 5_000
    assert not await rh.client.exists(k.done("zero"))
    assert 59_000 < await rh.client.pttl(k.done("default")) <= 60_000
    assert await rh.client.hget(k.totals("q"), "completed") == b"3"
