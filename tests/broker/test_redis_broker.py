"""Redis broker specifics: script cache loss, key layout, TTLs, bad data, blocking wake-ups,
event loops, URLs and errors. The shared conformance suite covers the contract itself."""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import anyio.from_thread
import msgspec
import pytest
from redis.crc import key_slot

from taskit.broker import from_url
from taskit.broker.redis import RedisBroker
from taskit.broker.redis.records import join_record, split_record
from taskit.errors import BrokerConnectionError, ConfigurationError
from taskit.job import Job, JobStatus, LeaseState, Outcome, OutcomeKind, encode_arguments
from tests.broker._redis_kinds import OWN, RedisHarness, open_redis_harness

pytestmark = pytest.mark.anyio

LONG = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_job(queue: str, *args: object, job_id: str | None = None) -> Job:
    return Job(
        id=job_id or uuid.uuid4().hex,
        task="tests.noop",
        queue=queue,
        payload=encode_arguments(args, {}),
        created_at=datetime.now(UTC),
    )


@pytest.fixture(params=[OWN, "redispy-fakeredis"])
async def flushable(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    """A harness whose script cache the test may flush: a real server of the test's own (on
    the shared one, every test beside it would lose its scripts too), or fakeredis."""
    async with open_redis_harness(request.param, request) as harness:
        yield harness


async def test_a_flushed_script_cache_is_reloaded_transparently(flushable: RedisHarness) -> None:
    await flushable.broker.enqueue([make_job("q", 1)])
    await flushable.client.script_flush()

    [job] = await flushable.broker.enqueue([make_job("q", 2)])
    leases = await flushable.broker.reserve(["q"], count=5, lease=LONG, timeout=0)

    assert job.status is JobStatus.PENDING
    assert len(leases) == 2


async def test_every_key_of_a_broker_shares_one_hash_tag_and_slot(rh: RedisHarness) -> None:
    broker = rh.broker
    await broker.enqueue([make_job("a"), make_job("b")], delays=[0.0, LONG])
    [held] = await broker.reserve(["a"], count=1, lease=LONG, timeout=0)
    await broker.settle([Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.COMPLETE)])
    await broker.enqueue([make_job("a")])
    [dead] = await broker.reserve(["a"], count=1, lease=LONG, timeout=0)
    await broker.settle(
        [Outcome(job_id=dead.job.id, token=dead.token, kind=OutcomeKind.DEAD_LETTER)]
    )

    keys = sorted([k.decode() async for k in rh.client.scan_iter(match=broker.keys.pattern())])

    tag = broker.keys.tag
    assert {k.split(":", 1)[0] for k in keys} == {tag}
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert broker.keys.done(held.job.id) in keys
    for key in (broker.keys.totals("a"), broker.keys.dead("a"), broker.keys.delayed("b")):
        assert key in keys
    assert broker.keys.fifo("a") == f"{tag}:q:a:fifo"


async def test_finished_jobs_expire_and_live_ones_carry_no_ttl(rh: RedisHarness) -> None:
    broker, keys = rh.broker, rh.broker.keys
    await broker.enqueue([make_job("q"), make_job("q"), make_job("q")])
    done, dead, live = await broker.reserve(["q"], count=3, lease=LONG, timeout=0)
    await broker.settle(
        [
            Outcome(job_id=done.job.id, token=done.token, kind=OutcomeKind.COMPLETE),
            Outcome(job_id=dead.job.id, token=dead.token, kind=OutcomeKind.DEAD_LETTER),
        ]
    )

    ttl = await rh.client.pttl(keys.done(done.job.id))
    assert 0 < ttl <= 60_000  # the harness's result_ttl
    every = [k.decode() async for k in rh.client.scan_iter(match=keys.pattern())]
    for key in every:
        # counts are kept a day, the index of completed jobs as long as what it lists
        if key not in (keys.done(done.job.id), keys.queue("q", "completed")) and (
            ":counts:" not in key
        ):
            assert await rh.client.pttl(key) == -1, key  # live records: never an expiry
    assert not await rh.client.exists(keys.done(dead.job.id))
    assert not await rh.client.exists(keys.done(live.job.id))
    assert await rh.client.hexists(keys.jobs, live.job.id)
    assert not await rh.client.hexists(keys.jobs, done.job.id)


async def test_a_zero_result_ttl_forgets_finished_jobs_at_once(
    request: pytest.FixtureRequest,
) -> None:
    async with open_redis_harness("redispy-fakeredis", request, result_ttl=0.0) as h:
        await h.broker.enqueue([make_job("q")])
        [held] = await h.broker.reserve(["q"], count=1, lease=LONG, timeout=0)
        await h.broker.settle(
            [Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.COMPLETE)]
        )
        assert await h.broker.get(held.job.id) is None


async def replace_spec(rh: RedisHarness, job_id: str, spec: bytes) -> None:
    """Overwrite the stored job bytes of a live record, keeping its state."""
    raw = await rh.client.hget(rh.broker.keys.jobs, job_id)
    assert raw is not None
    await rh.client.hset(rh.broker.keys.jobs, job_id, join_record(split_record(raw)[0], spec))


async def test_undecodable_bytes_are_dead_lettered_while_other_jobs_flow(
    rh: RedisHarness,
) -> None:
    broker, keys = rh.broker, rh.broker.keys
    before = make_job("q", "before")
    await broker.enqueue([before])
    # A record whose job bytes are garbage, in the ready set behind `before`.
    [victim] = await broker.enqueue([make_job("q", "victim")])
    await replace_spec(rh, victim.id, b"\xc1 not msgpack")
    # A ready entry with no record at all.
    await rh.client.rpush(keys.fifo("q"), "ghost")
    after = make_job("q", "after")
    await broker.enqueue([after])

    leases = await broker.reserve(["q"], count=10, lease=LONG, timeout=0)

    assert [lease.job.id for lease in leases] == [before.id, after.id]
    letters = {job.id: job for job in await broker.dead_letters("q")}
    assert set(letters) == {victim.id, "ghost"}
    assert letters[victim.id].status is JobStatus.DEAD_LETTER
    assert letters[victim.id].error is not None
    assert "does not decode" in letters[victim.id].error
    assert letters[victim.id].attempts == 1
    assert letters["ghost"].error == (
        "job record unreadable: record missing (its id was ready, its record gone)"
    )
    stats = (await broker.stats(["q"]))["q"]
    assert (stats.running, stats.dead, stats.queued) == (2, 2, 0)
    fetched = await broker.get(victim.id)
    assert fetched is not None
    assert fetched.status is JobStatus.DEAD_LETTER


async def test_an_undecodable_job_alone_does_not_end_a_blocking_reserve(
    rh: RedisHarness,
) -> None:
    broker = rh.broker
    [victim] = await broker.enqueue([make_job("q")])
    await replace_spec(rh, victim.id, b"\xc1")

    with anyio.fail_after(5):
        assert await broker.reserve(["q"], count=1, lease=LONG, timeout=0.2) == []

    assert [job.id for job in await broker.dead_letters("q")] == [victim.id]


@pytest.mark.parametrize("delay", [1e12, math.inf], ids=["ten-thousand-years", "inf"])
async def test_a_delay_past_the_datetime_range_waits_forever_without_harm(
    rh: RedisHarness, delay: float
) -> None:
    broker = rh.broker
    ready, late = make_job("q"), make_job("q")

    stored = await broker.enqueue([ready, late], delays=[0.0, delay])

    assert [job.status for job in stored] == [JobStatus.PENDING, JobStatus.SCHEDULED]
    assert stored[1].scheduled_at == datetime(9999, 12, 31, tzinfo=UTC)
    [held] = await broker.reserve(["q"], count=5, lease=LONG, timeout=0.05)
    assert held.job.id == ready.id
    retry = Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.RETRY, delay=delay)
    assert await broker.settle([retry]) == [True]
    assert (await broker.stats(["q"]))["q"].scheduled == 2
    assert await broker.cancel(late.id) is True


async def test_a_blocked_reserve_picks_an_enqueued_job_within_milliseconds(
    rh: RedisHarness,
) -> None:
    broker = rh.broker
    await broker.reserve(["warm"], count=1, lease=LONG, timeout=0)  # connect outside the timing
    waits: list[float] = []
    picked: list[float] = []

    async def consume() -> None:
        await broker.reserve(["q"], count=1, lease=LONG, timeout=5)
        picked.append(anyio.current_time())

    for _ in range(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.05)  # let it block in BLPOP
            sent = anyio.current_time()
            await broker.enqueue([make_job("q")])
        waits.append(picked[-1] - sent)

    assert max(waits) < 0.05, waits


async def test_a_delayed_job_wakes_a_blocked_reserve_at_its_due_time(rh: RedisHarness) -> None:
    broker = rh.broker
    started = anyio.current_time()
    [job] = await broker.enqueue([make_job("q")], delays=[0.3])

    with anyio.fail_after(5):
        leases = await broker.reserve(["q"], count=1, lease=LONG, timeout=3)
    waited = anyio.current_time() - started

    assert [lease.job.id for lease in leases] == [job.id]
    assert 0.28 <= waited < 0.4, waited


async def test_a_delayed_job_enqueued_during_a_long_wait_shortens_it(rh: RedisHarness) -> None:
    broker = rh.broker
    got: list[float] = []

    async def consume() -> None:
        await broker.reserve(["q"], count=1, lease=LONG, timeout=5)
        got.append(anyio.current_time())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.05)
            sent = anyio.current_time()
            await broker.enqueue([make_job("q")], delays=[0.2])

    assert 0.18 <= got[0] - sent < 0.35


async def test_a_cancelled_wait_leases_nothing(rh: RedisHarness) -> None:
    broker = rh.broker
    with anyio.move_on_after(0.1):
        await broker.reserve(["q"], count=1, lease=LONG, timeout=5)
    [job] = await broker.enqueue([make_job("q")])

    leases = await broker.reserve(["q"], count=1, lease=LONG, timeout=0)

    assert [lease.job.id for lease in leases] == [job.id]


async def test_one_broker_serves_two_event_loops(rh: RedisHarness) -> None:
    broker = rh.broker
    await broker.enqueue([make_job("q", "from the main loop")])
    with anyio.from_thread.start_blocking_portal() as portal:
        [job] = await anyio.to_thread.run_sync(
            lambda: portal.call(broker.enqueue, [make_job("q", "from a portal")])
        )
        leases = await broker.reserve(["q"], count=2, lease=LONG, timeout=0)
        assert [lease.job.args for lease in leases] == [("from the main loop",), (job.args[0],)]
        await broker.close()  # closes this loop's clients, schedules the portal loop's
    assert threading.active_count() >= 1


def test_the_redis_broker_refuses_trio_with_a_clear_error() -> None:
    broker = RedisBroker("redis://127.0.0.1:6379/0", prefix=f"t-{uuid.uuid4().hex}")

    async def use() -> None:
        await broker.get("x")

    with pytest.raises(ConfigurationError, match="asyncio only"):
        anyio.run(use, backend="trio")


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://h:6380/1", "unix:///tmp/redis.sock?db=2"]
)
def test_from_url_makes_a_redis_broker(url: str) -> None:
    assert isinstance(from_url(url), RedisBroker)


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b"])
def test_a_prefix_that_would_break_the_hash_tag_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisBroker(prefix=prefix)


def test_a_non_redis_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a Redis URL"):
        RedisBroker("http://user:pw@localhost")


async def test_an_unreachable_server_raises_without_the_password() -> None:
    broker = RedisBroker("redis://user:s3cret@127.0.0.1:1/0")
    try:
        with anyio.fail_after(5), pytest.raises(BrokerConnectionError) as caught:
            await broker.get("x")
    finally:
        await broker.close()
    assert "s3cret" not in str(caught.value)
    assert "user:***@127.0.0.1:1" in str(caught.value)


async def test_jobs_in_an_older_key_layout_are_reported_by_key(
    rh: RedisHarness, caplog: pytest.LogCaptureFixture
) -> None:
    old = rh.broker.keys.legacy[0]
    await rh.client.hset(old, "job-1", "pending|0|0|0000000000000001|||||||default")

    with caplog.at_level(logging.ERROR, logger="taskit.broker.redis.watch"):
        await rh.broker.stats(["default"])
        await rh.broker.stats(["default"])

    said = [r.getMessage() for r in caplog.records if "older taskit key layout" in r.getMessage()]
    assert len(said) == 1  # once per broker
    assert old in said[0]


async def test_a_current_layout_alone_is_not_reported(
    rh: RedisHarness, caplog: pytest.LogCaptureFixture
) -> None:
    await rh.broker.enqueue([make_job("default")])

    with caplog.at_level(logging.ERROR, logger="taskit.broker.redis.watch"):
        await rh.broker.stats(["default"])

    assert "older taskit key layout" not in caplog.text


async def test_a_token_whose_queue_part_names_another_queue_is_stale(rh: RedisHarness) -> None:
    """The queue part of a lease token (``<random>|<queue>``) says which queue's keys a settle
    or extend touches: one naming another queue, with the right random part, is not a token
    the broker made, and changes nothing there or in the job's own queue."""
    broker = rh.broker
    own, other = f"q-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    job = Job(id=uuid.uuid4().hex, task="t", queue=own, payload=encode_arguments((), {}),
              created_at=datetime.now(UTC))  # fmt: skip
    await broker.enqueue([job])
    [held] = await broker.reserve([own], count=1, lease=30, timeout=0)
    rand = held.token.partition("|")[0]
    tampered = msgspec.structs.replace(held, token=f"{rand}|{other}")
    assert await broker.extend([tampered], lease=60) == [LeaseState.LOST]
    retry = Outcome(job_id=job.id, token=tampered.token, kind=OutcomeKind.RETRY, delay=60)
    assert await broker.settle([retry]) == [False]
    got = await broker.get(job.id)
    assert got is not None
    assert got.status is JobStatus.RUNNING
    assert await rh.client.zcard(broker.keys.leases(other)) == 0
    assert await rh.client.zcard(broker.keys.delayed(other)) == 0
    assert await rh.client.zscore(broker.keys.leases(own), job.id) is not None
    # The job's own token still holds it and settles it.
    assert await broker.extend([held], lease=60) == [LeaseState.HELD]
    done = Outcome(job_id=job.id, token=held.token, kind=OutcomeKind.COMPLETE)
    assert await broker.settle([done]) == [True]
