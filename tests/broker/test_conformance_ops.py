"""Broker conformance: ``claim`` and ``heartbeat``, the two coordination operations.

Runs unchanged against every broker kind; each test uses keys and names of its own. The last test
calls the ``heartbeat`` Lua script directly, as every script has a direct test.
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


async def test_heartbeat_lists_live_names_until_they_expire(harness: BrokerHarness) -> None:
    broker = harness.broker
    a, b = fresh("a"), fresh("b")
    assert await broker.heartbeat(a, b"one", ttl=0.3) == {a: b"one"}
    seen = await broker.heartbeat(b, b"two", ttl=30.0)
    assert seen == {a: b"one", b: b"two"}
    assert list(seen) == sorted(seen)  # in name order
    assert await broker.heartbeat(a, b"one again", ttl=0.3) == {a: b"one again", b: b"two"}
    await harness.advance(0.4)
    assert await broker.heartbeat() == {b: b"two"}  # a's record expired: it stopped beating


async def test_heartbeat_without_a_name_only_reads(harness: BrokerHarness) -> None:
    assert await harness.broker.heartbeat() == {}
    assert await harness.broker.heartbeat(None, b"ignored", ttl=10.0) == {}


async def test_heartbeat_with_no_ttl_withdraws_the_name(harness: BrokerHarness) -> None:
    broker, a = harness.broker, fresh("a")
    await broker.heartbeat(a, b"x", ttl=30.0)
    assert await broker.heartbeat(a) == {}
    assert await broker.heartbeat(fresh("never-announced")) == {}  # withdrawing nothing is fine


async def test_heartbeat_keeps_binary_records_intact(harness: BrokerHarness) -> None:
    a, record = fresh("a"), bytes(range(256))
    assert await harness.broker.heartbeat(a, record, ttl=30.0) == {a: record}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("kind", ["redis", "fakeredis"])
async def test_heartbeat_script_directly(kind: str, request: pytest.FixtureRequest) -> None:
    async with open_redis_harness(kind, request) as rh:
        k, scripts = rh.broker.keys, Scripts()
        keys = [k.workers, k.beats]
        reply = await scripts.call(rh.client, "heartbeat", keys, ["w1", b"rec", 60_000])
        assert reply == [b"w1", b"rec"]
        assert await rh.client.zscore(k.workers, "w1") is not None
        await scripts.call(rh.client, "heartbeat", keys, ["w0", b"gone", 1])
        await anyio.sleep(0.01)
        assert await scripts.call(rh.client, "heartbeat", keys, ["", b"", 0]) == [b"w1", b"rec"]
        assert await rh.client.hkeys(k.beats) == [b"w1"]  # the expired record was deleted
        assert await scripts.call(rh.client, "heartbeat", keys, ["w1", b"", 0]) == []
        assert await rh.client.exists(k.workers, k.beats) == 0
