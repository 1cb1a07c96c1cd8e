"""Broker conformance: ``claim``, and ``announce`` / ``withdraw`` / ``live``, the coordination
operations.

Runs unchanged against every broker kind; each test uses keys and names of its own. The last
tests call the ``announce``, ``withdraw`` and ``live`` Lua scripts directly, as every script has
a direct test.
"""

from __future__ import annotations

import uuid

import anyio
import pytest

from taskit.broker.redis.scripts import Scripts
from tests.broker._redis_kinds import open_redis_harness
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio


def fresh(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:8]}"


async def test_claim_is_taken_once_until_it_expires(harness: BrokerHarness) -> None:
    broker, key = harness.broker, fresh("run")
    assert await broker.claim(key, 0.3) is True
    assert await broker.claim(key, 0.3) is False
    assert await broker.claim(fresh("other"), 0.3) is True  # keys are independent
    await harness.advance(0.4)
    assert await broker.claim(key, 0.3) is True


async def test_claim_has_exactly_one_winner_among_concurrent_callers(
    harness: BrokerHarness,
) -> None:
    key, wins = fresh("race"), []

    async def contend() -> None:
        wins.append(await harness.broker.claim(key, 30.0))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(contend)
    assert sorted(wins) == [False] * 19 + [True]


async def test_claim_refuses_a_ttl_that_is_not_positive(harness: BrokerHarness) -> None:
    for ttl in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="ttl"):
            await harness.broker.claim(fresh("bad"), ttl)


async def test_claims_are_apart_from_jobs(harness: BrokerHarness) -> None:
    key = fresh("job-like")
    assert await harness.broker.claim(key, 30.0)
    assert await harness.broker.get(key) is None


async def test_live_lists_announced_names_until_they_expire(harness: BrokerHarness) -> None:
    broker = harness.broker
    a, b = fresh("a"), fresh("b")
    await broker.announce(a, b"one", ttl=0.3)
    assert await broker.live() == {a: b"one"}
    await broker.announce(b, b"two", ttl=30.0)
    seen = await broker.live()
    assert seen == {a: b"one", b: b"two"}
    assert list(seen) == sorted(seen)  # in name order
    await broker.announce(a, b"one again", ttl=0.3)
    assert await broker.live() == {a: b"one again", b: b"two"}
    await harness.advance(0.4)
    assert await broker.live() == {b: b"two"}  # a's record expired: it stopped announcing


async def test_live_only_reads(harness: BrokerHarness) -> None:
    assert await harness.broker.live() == {}
    assert await harness.broker.live() == {}


async def test_announce_needs_a_positive_ttl(harness: BrokerHarness) -> None:
    for ttl in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="ttl"):
            await harness.broker.announce(fresh("a"), b"x", ttl=ttl)
    assert await harness.broker.live() == {}


async def test_withdraw_forgets_the_name(harness: BrokerHarness) -> None:
    broker, a = harness.broker, fresh("a")
    await broker.announce(a, b"x", ttl=30.0)
    await broker.withdraw(a)
    assert await broker.live() == {}
    await broker.withdraw(fresh("never-announced"))  # withdrawing nothing is fine
    assert await broker.live() == {}


async def test_announce_keeps_binary_records_intact(harness: BrokerHarness) -> None:
    a, record = fresh("a"), bytes(range(256))
    await harness.broker.announce(a, record, ttl=30.0)
    assert await harness.broker.live() == {a: record}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("kind", ["fast-real", "redispy-fakeredis"])
async def test_announce_withdraw_and_live_scripts_directly(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with open_redis_harness(kind, request) as rh:
        k, scripts = rh.broker.keys, Scripts()
        keys = [k.workers, k.beats]
        assert await scripts.call(rh.direct, "announce", keys, ["w1", b"rec", 60_000]) == 1
        assert await rh.client.zscore(k.workers, "w1") is not None
        assert await scripts.call(rh.direct, "live", keys, []) == [b"w1", b"rec"]
        await scripts.call(rh.direct, "announce", keys, ["w0", b"gone", 1])
        await anyio.sleep(0.01)
        assert await scripts.call(rh.direct, "live", keys, []) == [b"w1", b"rec"]
        assert await rh.client.hkeys(k.beats) == [b"w1"]  # the expired record was deleted
        await scripts.call(rh.direct, "announce", keys, ["w2", b"r2", 1])
        await anyio.sleep(0.01)
        await scripts.call(rh.direct, "announce", keys, ["w1", b"rec", 60_000])
        assert await rh.client.hkeys(k.beats) == [b"w1"]  # announce forgets expired ones too
        assert await scripts.call(rh.direct, "withdraw", keys, ["w1"]) == 1
        assert await scripts.call(rh.direct, "withdraw", keys, ["w1"]) == 0
        assert await scripts.call(rh.direct, "live", keys, []) == []
        assert await rh.client.exists(k.workers, k.beats) == 0
