"""Broker conformance: once keys (``begin_once`` / ``end_once``), what ``taskit.once`` stands on.

Runs unchanged against every broker kind; each test uses keys of its own. The last test calls the
``once-begin`` and ``once-end`` Lua scripts directly, as every script has a direct test.
"""

from __future__ import annotations

import uuid

import anyio
import pytest

from taskit.broker.base import OnceState
from taskit.broker.redis.scripts import Scripts
from tests.broker._redis_kinds import open_redis_harness
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

TAKEN, DONE, HELD = OnceState.TAKEN, OnceState.DONE, OnceState.HELD


def fresh(what: str = "once") -> str:
    return f"{what}-{uuid.uuid4().hex[:8]}"


async def test_a_free_key_is_taken_then_held_then_done(harness: BrokerHarness) -> None:
    broker, key = harness.broker, fresh()
    assert await broker.begin_once(key, "a", hold=30.0) is TAKEN
    assert await broker.begin_once(key, "b", hold=30.0) is HELD
    assert await broker.begin_once(key, "a", hold=30.0) is HELD  # a token takes a key once
    assert await broker.begin_once(fresh(), "b", hold=30.0) is TAKEN  # keys are independent
    assert await broker.end_once(key, "a", done_for=30.0) is True
    assert await broker.begin_once(key, "c", hold=30.0) is DONE


async def test_a_released_key_is_free_at_once(harness: BrokerHarness) -> None:
    broker, key = harness.broker, fresh()
    assert await broker.begin_once(key, "a", hold=30.0) is TAKEN
    assert await broker.end_once(key, "a", done_for=None) is True
    assert await broker.begin_once(key, "b", hold=30.0) is TAKEN


async def test_a_hold_nobody_ends_expires(harness: BrokerHarness) -> None:
    broker, key = harness.broker, fresh()
    assert await broker.begin_once(key, "dead", hold=0.3) is TAKEN
    await harness.advance(0.4)
    assert await broker.begin_once(key, "next", hold=30.0) is TAKEN
    # The dead run's late ending is fenced: its release frees nothing.
    assert await broker.end_once(key, "dead", done_for=None) is False
    assert await broker.begin_once(key, "third", hold=30.0) is HELD


async def test_done_is_remembered_for_its_ttl(harness: BrokerHarness) -> None:
    broker, key = harness.broker, fresh()
    assert await broker.begin_once(key, "a", hold=30.0) is TAKEN
    assert await broker.end_once(key, "a", done_for=0.3) is True
    assert await broker.begin_once(key, "b", hold=30.0) is DONE
    await harness.advance(0.4)
    assert await broker.begin_once(key, "c", hold=30.0) is TAKEN


async def test_a_late_success_is_still_recorded(harness: BrokerHarness) -> None:
    """The work happened, so a success after the hold expired marks the key done (answered
    False: the hold was lost), whether the key was free or another run held it."""
    broker, key = harness.broker, fresh()
    assert await broker.begin_once(key, "slow", hold=0.3) is TAKEN
    await harness.advance(0.4)
    assert await broker.end_once(key, "slow", done_for=30.0) is False
    assert await broker.begin_once(key, "x", hold=30.0) is DONE
    other = fresh()
    assert await broker.begin_once(other, "slow", hold=0.3) is TAKEN
    await harness.advance(0.4)
    assert await broker.begin_once(other, "second", hold=30.0) is TAKEN
    assert await broker.end_once(other, "slow", done_for=30.0) is False
    assert await broker.begin_once(other, "x", hold=30.0) is DONE
    assert await broker.end_once(other, "second", done_for=None) is False  # stays done
    assert await broker.end_once(other, "second", done_for=30.0) is False  # first mark kept
    assert await broker.begin_once(other, "x", hold=30.0) is DONE


async def test_end_is_idempotent_for_a_retry(harness: BrokerHarness) -> None:
    broker, key = harness.broker, fresh()
    assert await broker.begin_once(key, "a", hold=30.0) is TAKEN
    assert await broker.end_once(key, "a", done_for=30.0) is True
    assert await broker.end_once(key, "a", done_for=30.0) is True  # its reply was lost: again
    assert await broker.begin_once(key, "b", hold=30.0) is DONE
    assert await broker.end_once(key, "a", done_for=None) is False  # a done key is not freed
    assert await broker.begin_once(key, "b", hold=30.0) is DONE


async def test_a_stranger_cannot_release_a_hold(harness: BrokerHarness) -> None:
    broker, key = harness.broker, fresh()
    assert await broker.begin_once(key, "a", hold=30.0) is TAKEN
    assert await broker.end_once(key, "b", done_for=None) is False
    assert await broker.begin_once(key, "c", hold=30.0) is HELD
    assert await broker.end_once(fresh(), "b", done_for=None) is False  # an unknown key


async def test_exactly_one_of_many_concurrent_callers_takes_a_key(harness: BrokerHarness) -> None:
    key, got = fresh("race"), []

    async def contend(n: int) -> None:
        got.append(await harness.broker.begin_once(key, f"t{n}", hold=30.0))

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(contend, n)
    assert sorted(got, key=lambda s: s.value) == [HELD] * 19 + [TAKEN]


async def test_durations_must_be_positive(harness: BrokerHarness) -> None:
    broker, key = harness.broker, fresh("bad")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="hold"):
            await broker.begin_once(key, "a", hold=bad)
        with pytest.raises(ValueError, match="done_for"):
            await broker.end_once(key, "a", done_for=bad)
    assert await broker.begin_once(key, "a", hold=30.0) is TAKEN  # nothing was taken


async def test_once_keys_are_apart_from_claims_and_jobs(harness: BrokerHarness) -> None:
    broker, key = harness.broker, fresh("shared")
    assert await broker.claim(key, 30.0)
    assert await broker.begin_once(key, "a", hold=30.0) is TAKEN
    assert await broker.get(key) is None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("kind", ["fast-real", "redispy-fakeredis"])
async def test_once_scripts_directly(kind: str, request: pytest.FixtureRequest) -> None:
    async with open_redis_harness(kind, request) as rh:
        scripts, key = Scripts(), rh.broker.keys.once("k")
        assert await scripts.call(rh.direct, "once-begin", [key], ["a", 60_000]) == b"taken"
        assert await rh.client.get(key) == b"run:a"
        assert 0 < await rh.client.pttl(key) <= 60_000
        assert await scripts.call(rh.direct, "once-begin", [key], ["b", 60_000]) == b"held"
        assert await scripts.call(rh.direct, "once-end", [key], ["b", 0]) == 0
        assert await scripts.call(rh.direct, "once-end", [key], ["a", 0]) == 1
        assert await rh.client.exists(key) == 0
        assert await scripts.call(rh.direct, "once-begin", [key], ["c", 60_000]) == b"taken"
        assert await scripts.call(rh.direct, "once-end", [key], ["c", 5_000]) == 1
        assert await rh.client.get(key) == b"done:c"
        assert 4_000 < await rh.client.pttl(key) <= 5_000
        assert await scripts.call(rh.direct, "once-end", [key], ["c", 5_000]) == 1
        assert await scripts.call(rh.direct, "once-begin", [key], ["d", 60_000]) == b"done"
        assert await scripts.call(rh.direct, "once-end", [key], ["d", 9_000]) == 0
        assert await rh.client.get(key) == b"done:c"  # the first mark stays
        assert await rh.client.type(key) == b"string"
