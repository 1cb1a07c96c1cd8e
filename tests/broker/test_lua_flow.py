"""pause-5.lua and the flow-control parts of reserve-n.lua and enqueue-n.lua, called directly:
the paused set read by reserve (and its wait), resume's wake-ups, and the dedup hash and window
set an enqueue keeps; the ``Pause`` request's answer."""

from __future__ import annotations

import pytest

from taskit.broker.redis import requests
from tests.broker._redis_kinds import RedisHarness
from tests.broker.test_lua_scripts import (
    SPEC,
    anyio_backend,
    enqueue,
    enqueue_keys,
    reserve,
    run,
)

__all__ = ["anyio_backend"]  # the fixture, re-used: these tests run on asyncio only

pytestmark = pytest.mark.anyio


async def pause(rh: RedisHarness, paused: bool) -> object:
    request = requests.Pause("q", paused)
    return await run(rh, "pause", request.keys(rh.broker.keys), request.args())


async def test_a_paused_queue_is_promoted_not_taken_and_sets_no_wait(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "ready")
    await enqueue(rh, "later", delay_ms=60_000)
    assert await pause(rh, True) == 1
    assert await pause(rh, True) == 0
    await rh.client.delete(k.wake("q"))

    reply = await reserve(rh)

    assert reply[1] == -1  # no lease, and its delayed job does not shorten the wait
    assert len(reply) == 2
    assert await rh.client.lrange(k.fifo("q"), 0, -1) == [b"ready"]


async def test_resume_pushes_a_wake_up_per_ready_job(rh: RedisHarness) -> None:
    k = rh.broker.keys
    for job_id in ("a", "b", "c"):
        await enqueue(rh, job_id)
    await pause(rh, True)
    await rh.client.delete(k.wake("q"))

    assert await pause(rh, False) == 1
    assert await rh.client.llen(k.wake("q")) == 3
    assert await pause(rh, False) == 0
    assert await rh.client.llen(k.wake("q")) == 3  # nothing changed, nobody woken again
    assert len(await reserve(rh)) == 2 + 5 * 3


async def dedup_enqueue(rh: RedisHarness, job_id: str, mode: str, window_ms: int) -> list:
    k = rh.broker.keys
    args = ["1 1", "q", job_id, SPEC, "1 1 0 0 -1", "", 1, f"{mode} {window_ms}", "key"]
    reply = await run(rh, "enqueue", enqueue_keys(k, job_id), args)
    assert isinstance(reply, list)
    return reply


async def test_a_throttle_window_is_kept_in_the_dedup_hash_and_window_set(
    rh: RedisHarness,
) -> None:
    k = rh.broker.keys
    first = await dedup_enqueue(rh, "j1", "t", 60_000)
    assert first[1] == 0  # stored now
    assert await rh.client.hget(k.dedup, "key") == b"j1"
    assert await rh.client.zscore(k.dedup_until, "key") is not None

    again = await dedup_enqueue(rh, "j2", "t", 60_000)

    assert again[1] == b"j1"  # kept in its place: the id of the kept job, and its record
    assert again[3].startswith(b"pending|")
    assert await rh.client.hexists(k.jobs, "j2") == 0


async def test_an_ended_window_is_forgotten_by_a_later_dedup_enqueue(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await rh.client.hset(k.dedup, "old", "gone")
    await rh.client.zadd(k.dedup_until, {"old": 1})  # ended long ago

    await dedup_enqueue(rh, "j1", "t", 60_000)

    assert await rh.client.hexists(k.dedup, "old") == 0
    assert await rh.client.zscore(k.dedup_until, "old") is None
    assert await rh.client.hget(k.dedup, "key") == b"j1"


async def test_a_debounced_job_waits_its_window_and_takes_the_last_spec(
    rh: RedisHarness,
) -> None:
    k = rh.broker.keys
    await dedup_enqueue(rh, "j1", "d", 60_000)
    due = await rh.client.zscore(k.delayed("q"), "j1")
    assert due is not None

    again = await dedup_enqueue(rh, "j2", "d", 90_000)

    assert again[1] == b"j1"
    later = await rh.client.zscore(k.delayed("q"), "j1")
    assert later is not None
    assert later >= due + 29_000  # its start moved to the end of the new window
    assert await rh.client.zscore(k.dedup_until, "key") == later
    assert await rh.client.hexists(k.jobs, "j2") == 0


def test_pause_answers_whether_the_state_changed() -> None:
    assert requests.Pause("q", True).answer(1) is True
    assert requests.Pause("q", False).answer(0) is False
    assert requests.Pause("q", False).args() == ["q", "0"]
