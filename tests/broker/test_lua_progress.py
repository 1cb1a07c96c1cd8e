"""progress-2.lua called directly (fenced writes to the progress hash), and settle moving a
job's progress into its done key; the ``SetProgress`` request's answer."""

from __future__ import annotations

import pytest

from taskit.broker.redis import requests
from tests.broker._redis_kinds import RedisHarness
from tests.broker.test_lua_scripts import anyio_backend, enqueue, reserve, run, settle_keys

__all__ = ["anyio_backend"]  # the fixture, re-used: these tests run on asyncio only

pytestmark = pytest.mark.anyio


async def test_progress_is_written_only_under_the_current_token(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "j1")
    await enqueue(rh, "j2")  # waiting, not running: refused
    await reserve(rh, count=1)
    args = ["j1", "stale", b"p0", "j1", "stem.1", b"p1", "j2", "stem.1", b"p2", "nope", "x", b"p3"]

    assert await run(rh, "progress", [k.jobs, k.progress], args) == [0, 1, 0, 0]
    assert await rh.client.hgetall(k.progress) == {b"j1": b"p1"}


async def test_settle_moves_progress_into_the_done_key(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "j1")
    await reserve(rh, count=1)
    await run(rh, "progress", [k.jobs, k.progress], ["j1", "stem.1", b"p1"])

    args = [60_000, 1, "j1", "stem.1 complete 1 0", "", ""]
    assert await run(rh, "settle", settle_keys(k, "j1"), args) == [1]

    assert await rh.client.hlen(k.progress) == 0
    assert await rh.client.hget(k.done("j1"), "prog") == b"p1"
    got = await run(rh, "get", [k.jobs, k.err, k.done("j1"), k.progress], ["j1"])
    assert isinstance(got, list)
    assert got[4] == b"p1"


async def test_a_job_kept_for_no_time_leaves_no_progress_behind(rh: RedisHarness) -> None:
    """A job settled with its own result TTL of 0 keeps no record: its progress goes too."""
    k = rh.broker.keys
    await enqueue(rh, "j1")
    await reserve(rh, count=1)
    await run(rh, "progress", [k.jobs, k.progress], ["j1", "stem.1", b"p1"])

    args = [60_000, 1, "j1", "stem.1 complete 1 0 0", "", ""]
    assert await run(rh, "settle", settle_keys(k, "j1"), args) == [1]

    assert await rh.client.hlen(k.progress) == 0
    assert await rh.client.exists(k.done("j1")) == 0


def test_set_progress_answers_one_bool_per_update() -> None:
    assert requests.SetProgress([]).answer([1, 0, 1]) == [True, False, True]
    assert requests.SetProgress([("a", "r", b"p")]).args() == ["a", "r", b"p"]
