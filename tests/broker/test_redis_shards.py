"""Sharded queues on Redis (``taskit.broker.redis.shards``): the shards' prefixes, one per equal
slot range, each served by its own master of a 3-master cluster; ``?shards=N`` in every Redis
URL and what ``from_url`` builds of it; the shard count kept in ``{p}:shards`` (a broker of
fewer shards refuses, one of more records its count), and its script.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio

from taskit import App
from taskit._urls import parse_broker_url
from taskit.broker import from_url
from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.broker.placement import shard_of
from taskit.broker.redis import RedisBroker
from taskit.broker.redis.keys import Keys
from taskit.broker.redis.scripts import SCRIPTS
from taskit.broker.redis.shards import SLOTS, covered_counts, shard_prefixes, sharded_redis
from taskit.broker.sharded import ShardedBroker
from taskit.config import Settings
from taskit.errors import BrokerError, BrokerOutcomeUnknownError, ConfigurationError
from taskit.job import JobStatus, OutcomeKind
from tests.broker._helpers import make_job, new_queue, outcome, status_of
from tests.broker._redis_kinds import RedisHarness
from tests.topology import RedisCluster, slot_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return f"taskit-s-{uuid.uuid4().hex[:10]}"


def range_of(tag: str, shards: int) -> int:
    """Which of ``shards`` equal slot ranges the slot of hash tag ``tag`` lies in."""
    slot = slot_of("{" + tag + "}")
    found = [k for k in range(shards) if k * SLOTS // shards <= slot < (k + 1) * SLOTS // shards]
    assert len(found) == 1
    return found[0]


# -- shard_prefixes --------------------------------------------------------------------------
@pytest.mark.parametrize("shards", range(2, 9))
@pytest.mark.parametrize("base", ["taskit", "app", "x", "billing-prod", "a~b", "日本"])
def test_each_shard_lies_in_its_own_slot_range(base: str, shards: int) -> None:
    prefixes = shard_prefixes(base, shards)
    assert prefixes[0] == base  # the home shard keeps today's keys
    assert sorted(range_of(p, shards) for p in prefixes) == list(range(shards))
    assert all(p.startswith(f"{base}~") for p in prefixes[1:])


def test_one_shard_is_the_prefix_itself_and_the_choice_never_changes() -> None:
    assert shard_prefixes("taskit", 1) == ["taskit"]
    # The prefixes name where jobs are stored: a change would hide every sharded job.
    assert shard_prefixes("taskit", 3) == ["taskit", "taskit~1", "taskit~4"]
    assert shard_prefixes("app", 4) == ["app", "app~3", "app~1", "app~4"]
    assert len(set(shard_prefixes("taskit", 64))) == 64


@pytest.mark.parametrize("base", ["taskit", "app", "x", "billing-prod"])
def test_the_shards_of_a_count_are_among_those_of_its_multiples(base: str) -> None:
    for shards in range(1, 17):
        covered = covered_counts(base, shards)
        assert {d for d in range(1, shards + 1) if shards % d == 0} <= set(covered)
        for n in covered:
            assert set(shard_prefixes(base, n)) <= set(shard_prefixes(base, shards))
    # Only multiples are sure: 2 shards of "app" are not among its 3.
    assert covered_counts("app", 3) == (1, 3)


@pytest.mark.parametrize("shards", [0, 65, -1, True, 2.0, "3"])
def test_a_shard_count_outside_1_to_64_is_refused(shards: object) -> None:
    with pytest.raises(ConfigurationError, match=f"from 1 to 64, got {shards!r}"):
        shard_prefixes("taskit", shards)  # type: ignore[arg-type]


@pytest.mark.parametrize("base", ["", "a{b", "c}"])
def test_a_prefix_that_cannot_be_a_hash_tag_is_refused(base: str) -> None:
    with pytest.raises(ConfigurationError, match=f"prefix must be .*got {base!r}"):
        shard_prefixes(base, 3)


# -- ?shards=N -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0?shards=3",
        "rediss://h:6380?shards=3&ssl_cert_reqs=none",
        "unix:///tmp/redis.sock?shards=3&db=2",
        "redis+cluster://h1:7000,h2:7001?prefix=p&shards=3",
        "redis+sentinel://s1:26379/mymaster?shards=3",
    ],
)
def test_every_redis_scheme_takes_shards_and_hands_it_not_to_the_client(url: str) -> None:
    parsed = parse_broker_url(url)
    assert parsed.shards == 3
    assert "shards" not in parsed.url
    assert "prefix" not in parsed.url
    assert parse_broker_url(url.replace("shards=3", "shards=1")).shards == 1
    assert parse_broker_url(url.partition("?")[0]).shards == 1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("shards=0", "option shards must be a whole number from 1 to 64.*got '0'"),
        ("shards=65", "from 1 to 64.*got '65'"),
        ("shards=x", "from 1 to 64.*got 'x'"),
        ("shards=+3", "from 1 to 64.*got '\\+3'"),
        ("shards=3&shards=3", "option 'shards' is given twice"),
        ("shards=", "option 'shards' has no value"),
    ],
)
def test_a_bad_shards_option_is_refused_naming_it(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_broker_url(f"redis://127.0.0.1:6379/0?{query}")
    with pytest.raises(ConfigurationError, match=message):  # TASKIT_BROKER_URL too
        Settings(broker_url=f"redis://127.0.0.1:6379/0?{query}")


def test_memory_takes_no_shards() -> None:
    with pytest.raises(ConfigurationError, match="memory:// takes no"):
        from_url("memory://?shards=3")


def test_from_url_builds_a_sharded_broker_for_more_than_one_shard() -> None:
    assert isinstance(from_url("memory://"), MemoryBroker)
    assert type(from_url("redis://127.0.0.1:6379/0?shards=1")) is RedisBroker
    made = from_url("redis://127.0.0.1:6379/0?prefix=pre&shards=3", timeout=2.0)
    assert isinstance(made, ShardedBroker)
    assert made.count == 3
    assert made.asyncio_only  # taskit worker --loop trio refuses it at once
    assert all(isinstance(shard, RedisBroker) for shard in made.shards)
    assert [keys_of(shard).prefix for shard in made.shards] == shard_prefixes("pre", 3)
    assert all(timeout_of(shard) == 2.0 for shard in made.shards)
    assert all(url_of(shard) == "redis://127.0.0.1:6379/0" for shard in made.shards)


def test_app_and_the_broker_url_setting_build_it_with_the_settings_prefix() -> None:
    settings = Settings(redis_prefix="from-settings", result_ttl=42.0)
    for app in (
        App("redis://127.0.0.1:6379/0?shards=4", settings=settings),
        App(settings=settings.replace(broker_url="redis://127.0.0.1:6379/0?shards=4")),
    ):
        assert isinstance(app.broker, ShardedBroker)
        prefixes = [keys_of(shard).prefix for shard in app.broker.shards]
        assert prefixes == shard_prefixes("from-settings", 4)
        assert app.broker_url == "redis://127.0.0.1:6379/0?shards=4"


def test_a_redis_broker_given_more_shards_points_to_from_url() -> None:
    with pytest.raises(ConfigurationError, match=r"asks for 3 shards.*taskit.broker.from_url"):
        RedisBroker("redis://127.0.0.1:6379/0?shards=3")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sharded_redis("redis://h", shards=1), "shards=1 is no sharded broker"),
        (lambda: sharded_redis("redis://h", shards=65), "from 1 to 64, got 65"),
        (lambda: sharded_redis("redis://h?shards=2", shards=3), "two shard counts"),
        (lambda: sharded_redis("redis://h?prefix=a", shards=2, prefix="b"), "two key prefixes"),
        (lambda: sharded_redis("memory://", shards=2), "not a Redis URL"),
        (lambda: sharded_redis("redis://h", shards=2, prefix="a{"), "without braces"),
    ],
)
def test_sharded_redis_refuses_what_it_cannot_build(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        call()


def keys_of(shard: Broker) -> Keys:
    assert isinstance(shard, RedisBroker)
    return shard.keys


def timeout_of(shard: Broker) -> float:
    assert isinstance(shard, RedisBroker)
    return shard.timeout


def url_of(shard: Broker) -> str:
    assert isinstance(shard, RedisBroker)
    return shard.url


# -- the shard count -------------------------------------------------------------------------
Make = Callable[..., Broker]


@pytest.fixture
async def made(redis_url: str, prefix: str) -> AsyncIterator[Make]:
    """Makes brokers of a shard count on real Redis under ``prefix`` (or the one given; a
    count of 1: a ``RedisBroker``); closes them and deletes every key of the prefixes' shards
    at the end."""
    brokers: list[Broker] = []
    used = {prefix}

    def make(shards: int, under: str = prefix) -> Broker:
        used.add(under)
        brokers.append(from_url(f"{redis_url}?prefix={under}&shards={shards}", result_ttl=60))
        return brokers[-1]

    yield make
    for broker in brokers:
        await broker.close()
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        for each in used:
            doomed = [key async for key in client.scan_iter(match="{" + each + "*", count=500)]
            if doomed:
                await client.delete(*doomed)
    finally:
        await client.aclose()


async def test_fewer_shards_than_recorded_are_refused_naming_both(made: Make, prefix: str) -> None:
    queue = new_queue()
    await made(3).enqueue([make_job(queue) for _ in range(6)])
    smaller = made(2)
    for _ in range(2):  # refused at its first call, and at every later one
        with pytest.raises(ConfigurationError, match=r"spread over 3 shards.*this broker has 2"):
            await smaller.reserve([queue], count=10, lease=30, timeout=0)
    plain = made(1)
    assert type(plain) is RedisBroker
    named = re.escape(f"3 shards ({{{prefix}}}:shards = 3), and this broker has 1")
    with pytest.raises(ConfigurationError, match=named):
        await plain.stats([queue])


async def test_more_shards_than_recorded_are_taken_and_recorded(
    made: Make, redis_url: str, prefix: str
) -> None:
    queue = new_queue()
    jobs = [make_job(queue) for _ in range(8)]
    await made(2).enqueue(jobs)
    grown = made(4)
    # Every job stored by the 2-shard broker is found by id by the 4-shard one, and served.
    assert [await status_of(grown, job.id) for job in jobs] == [JobStatus.PENDING] * 8
    leased = await grown.reserve([queue], count=10, lease=30, timeout=0)
    assert sorted(held.job.id for held in leased) == sorted(job.id for job in jobs)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        kept = [await client.get("{" + p + "}:shards") for p in shard_prefixes(prefix, 4)]
    finally:
        await client.aclose()
    assert kept == [b"4"] * 4
    with pytest.raises(ConfigurationError, match=r"spread over 4 shards.*has 2"):
        await made(2).stats([queue])


async def test_a_larger_count_without_every_shard_of_the_kept_one_is_refused(
    made: Make, redis_url: str, prefix: str
) -> None:
    # A prefix whose 2 shards are not all among its 3 (as for "app"; about one in five).
    under = next(
        p for p in (f"{prefix}-{i}" for i in range(1000)) if covered_counts(p, 3) == (1, 3)
    )
    queue = new_queue()
    await made(2, under).enqueue([make_job(queue)])
    with pytest.raises(ConfigurationError, match=r"over 2 shards.*has 3, which do not"):
        await made(3, under).reserve([queue], count=1, lease=30, timeout=0)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.get("{" + under + "}:shards") == b"2"  # refused: nothing recorded
    finally:
        await client.aclose()


async def test_a_first_call_that_reaches_another_shard_records_the_count_at_home(
    made: Make, redis_url: str, prefix: str
) -> None:
    job_id = next(f"job-{i}" for i in range(100) if shard_of(f"job-{i}", 3) != 0)
    await made(3).enqueue([make_job(new_queue(), job_id=job_id)])  # stored in shard 1 or 2
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.get("{" + prefix + "}:shards") == b"3"
    finally:
        await client.aclose()


async def test_a_round_trip_on_a_plain_redis_with_three_shards(
    made: Make,
) -> None:
    broker, queue = made(3), new_queue()
    jobs = await broker.enqueue([make_job(queue) for _ in range(9)])
    leased = await broker.reserve([queue], count=9, lease=30, timeout=1)
    assert len(leased) == 9
    settled = await broker.settle([outcome(h, OutcomeKind.COMPLETE) for h in leased])
    assert settled == [True] * 9
    assert [await status_of(broker, job.id) for job in jobs] == [JobStatus.COMPLETED] * 9


async def test_every_shard_waits_for_the_replicas_the_url_asks_for(
    redis_url: str, prefix: str
) -> None:
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        have = int((await client.info("replication"))["connected_slaves"])
    wait = f"replicas={have + 1}&replicas_timeout=20"
    broker = from_url(f"{redis_url}?prefix={prefix}-w&shards=3&{wait}", result_ttl=60)
    queue = new_queue()
    try:
        assert isinstance(broker, ShardedBroker)
        for k in range(3):  # a job stored in each shard: each one's write waits, and fails
            [job_id] = [i for i in (f"r{n}" for n in range(99)) if shard_of(i, 3) == k][:1]
            with pytest.raises(BrokerOutcomeUnknownError, match=f"only {have} of the {have + 1}"):
                await broker.enqueue([make_job(queue, job_id=job_id)])
    finally:
        await broker.close()


async def test_the_shards_script_records_a_larger_count_that_covers_the_kept_one(
    rh: RedisHarness,
) -> None:
    key = rh.broker.keys.shards

    async def shards(mine: int, *covers: int) -> object:
        return await SCRIPTS.call(rh.direct, "shards", [key], [mine, *covers])

    assert await shards(1, 1) == 1
    assert await rh.client.exists(key) == 0  # one shard never writes
    assert await shards(3, 1, 3) == 1
    assert await rh.client.get(key) == b"3"
    assert await shards(2, 1, 2) == 3  # smaller: answered, nothing written
    assert await shards(5, 1, 5) == 3  # larger, not covering 3: nothing written
    assert await rh.client.get(key) == b"3"
    assert await shards(6, 1, 2, 3, 6) == 3
    assert await rh.client.get(key) == b"6"
    await rh.client.set(key, b"two")
    with pytest.raises(Exception, match="holds two where taskit keeps a shard count"):
        await shards(3, 1, 3)
    await rh.client.delete(key)


async def test_a_damaged_shard_count_fails_the_call_naming_the_key(rh: RedisHarness) -> None:
    await rh.client.set(rh.broker.keys.shards, b"-1")
    with pytest.raises(BrokerError, match=r"\{.*\}:shards holds -1"):
        await rh.broker.stats([new_queue()])
    await rh.client.delete(rh.broker.keys.shards)


# -- on a Redis Cluster ------------------------------------------------------------------------
async def test_three_shards_on_three_masters_each_serve_one(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    owners = {redis_cluster.owner_of("{" + p + "}").id for p in shard_prefixes(prefix, 3)}
    assert len(owners) == 3
    assert owners == {master.id for master in redis_cluster.masters()}
    broker = from_url(f"{redis_cluster.url(prefix=prefix)}&shards=3", result_ttl=600)
    assert isinstance(broker, ShardedBroker)
    queue = new_queue()
    ids = [f"job-{i}" for i in range(12)]
    assert {shard_of(i, 3) for i in ids} == {0, 1, 2}  # some for each shard
    try:
        jobs = await broker.enqueue([make_job(queue, job_id=i) for i in ids])
        leased = await broker.reserve([queue], count=12, lease=30, timeout=1)
        assert sorted(h.job.id for h in leased) == sorted(j.id for j in jobs)
        settled = await broker.settle([outcome(h, OutcomeKind.COMPLETE) for h in leased])
        assert settled == [True] * 12
        assert [await status_of(broker, j.id) for j in jobs] == [JobStatus.COMPLETED] * 12
    finally:
        await broker.close()
    # Each master holds a part: the jobs spread by id over the three shards' slots.
    holding = [
        redis_cluster.owner_of("{" + p + "}").call("EXISTS", "{" + p + "}:q:" + queue + ":totals")
        for p in shard_prefixes(prefix, 3)
    ]
    assert holding == [1, 1, 1]


async def test_concurrent_enqueues_on_three_shards_are_combined_per_shard(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """Callers enqueueing at once share a script call per shard (``coalesce``): each shard is
    a broker of its own, its keys one Cluster slot, so no call crosses slots (the cluster
    would refuse it: CROSSSLOT)."""
    broker = from_url(f"{redis_cluster.url(prefix=prefix)}&shards=3", result_ttl=600)
    assert isinstance(broker, ShardedBroker)
    queue = new_queue()
    jobs = [make_job(queue, job_id=f"job-{i}") for i in range(48)]
    try:
        await broker.enqueue([make_job(queue, job_id=f"warm-{i}") for i in range(12)])
        got = await asyncio.gather(*(broker.enqueue([job]) for job in jobs))
        assert got == [[job] for job in jobs]
        assert [await status_of(broker, j.id) for j in jobs] == [JobStatus.PENDING] * 48
        combined = [shard._coalesced.combined for shard in broker._shards]
        assert all(n >= 1 for n in combined), combined
    finally:
        await broker.close()
