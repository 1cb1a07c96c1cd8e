"""Damaged keys other than a job's own record (issue 11, item 1): ids, queue names and worker
names that are not UTF-8, and counters that are not numbers. Nothing may stop a worker or fail a
call for every other job; the odd entry is dead-lettered, shown or skipped, never lost unseen.

Real Redis: the defects were a bare ``UnicodeDecodeError`` out of reserve (ending the worker),
``stats`` and ``heartbeat`` (now ``live``; tracebacks from ``taskit info`` / ``dlq list`` /
``check``, and a worker whose heartbeat ended it), and a ``HINCRBY`` on a counter holding a
non-integer, which failed every settle of the queue (its jobs ran again and again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio

from taskit import App, BrokerError, CorruptJobError, JobStatus
from taskit.broker.redis import RedisBroker
from taskit.broker.redis._testing import check_server_soon
from taskit.broker.redis.records import join_record, split_record
from taskit.job import Outcome, OutcomeKind
from taskit.registry import live_workers
from tests._poison_app import poison_app

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

BAD = b"\xff\xfe-not-utf8"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(redis_url: str) -> AsyncIterator[App]:
    async with poison_app(redis_url, "poisonkeys") as made:
        yield made


async def test_an_id_that_is_not_utf8_is_dead_lettered_and_listed(app: App, redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = app.broker.keys  # type: ignore[attr-defined]
    good = await app.tasks["add"].enqueue(1, 2)
    await client.hset(keys.jobs, BAD, await client.hget(keys.jobs, good.id))  # a copied record
    await client.lpush(keys.fifo("default"), BAD)  # ahead of the good job
    await client.zadd(keys.leases("default"), {BAD + b"2": 0})  # an expired lease, no record
    await client.hset(keys.jobs, BAD + b"2", await client.hget(keys.jobs, good.id))

    worker = app.worker(concurrency=2)
    with anyio.fail_after(10):
        await worker.run(burst=True)  # ended, not crashed

    assert (await app.get_job(good.id)).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    dead = await app.broker.dead_letters("default")
    assert len(dead) == 2
    assert all("not UTF-8" in (job.error or "") for job in dead)
    assert {job.id for job in dead} == {"\\xff\\xfe-not-utf8", "\\xff\\xfe-not-utf82"}
    assert await app.broker.purge_dead("default") == 2
    await client.aclose()


async def test_names_that_are_not_utf8_are_skipped_or_shown(app: App, redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = app.broker.keys  # type: ignore[attr-defined]
    await app.tasks["add"].enqueue(1, 2)
    await client.sadd(keys.queues, BAD)
    await client.zadd(keys.workers, {BAD: 2**52})
    await client.hset(keys.beats, BAD, b"{}")

    assert set(await app.stats()) == {"default"}  # a name no queue can have is left out
    assert list(await app.broker.live()) == ["\\xff\\xfe-not-utf8"]
    assert await live_workers(app.broker) == []  # its record does not decode: ignored
    worker = app.worker()
    with anyio.fail_after(10):
        await worker.run(burst=True)  # its registry lists every live name
    assert worker.stats.completed == 1
    await client.aclose()


@pytest.mark.parametrize("damage", ["not a number", "1.5", "wrong type"])
async def test_a_damaged_counter_never_fails_a_settle(
    app: App, redis_url: str, damage: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    totals = app.broker.keys.totals("default")  # type: ignore[attr-defined]
    if damage == "wrong type":
        await client.rpush(totals, b"x")
    else:
        await client.hset(totals, mapping={"completed": damage, "failed": "1e400"})
    jobs = [await app.tasks["add"].enqueue(i, i) for i in range(3)]

    worker = app.worker(concurrency=3)
    with anyio.fail_after(10):
        await worker.run(burst=True)

    for job in jobs:
        assert (await app.get_job(job.id)).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    if damage != "wrong type":
        stats = (await app.stats(["default"]))["default"]
        assert (stats.completed, stats.failed) == (0, 0)  # unreadable counts show as 0
    await client.aclose()


@pytest.mark.parametrize(
    ("key", "call"),
    [
        ("fifo", "reserve"),
        ("done", "get"),
        ("jobs", "cancel"),
        ("queues", "stats"),
        ("workers", "live"),
        ("dead", "dead_letters"),
    ],
)
async def test_a_key_of_the_wrong_type_is_named_in_the_error(
    app: App, redis_url: str, key: str, call: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = app.broker.keys  # type: ignore[attr-defined]
    job = await app.tasks["add"].enqueue(1, 2)
    if key == "done":
        await app.worker().run(burst=True)
    name = {
        "fifo": keys.fifo("default"),
        "done": keys.done(job.id),
        "jobs": keys.jobs,
        "queues": keys.queues,
        "workers": keys.workers,
        "dead": keys.dead("default"),
    }[key]
    await client.delete(name)
    await client.rpush(name, b"x") if key == "done" else await client.set(name, b"x")
    broker = app.broker
    calls = {
        "reserve": lambda: broker.reserve(["default"], count=1, lease=1, timeout=0),
        "get": lambda: broker.get(job.id),
        "cancel": lambda: broker.cancel(job.id),
        "stats": lambda: broker.stats(),
        "live": lambda: broker.live(),
        "dead_letters": lambda: broker.dead_letters("default"),
    }

    with pytest.raises(BrokerError, match="WRONGTYPE") as caught:
        await calls[call]()

    kept = "list" if key in ("fifo",) else "hash" if key in ("done", "jobs") else "zset"
    kept = "set" if key == "queues" else kept
    found = "list" if key == "done" else "string"
    assert f"key {name!r} holds a {found} where taskit keeps a {kept}" in str(caught.value)
    await client.aclose()


async def test_a_damaged_epoch_key_is_logged_once_and_fails_no_call(
    app: App, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = app.broker.keys  # type: ignore[attr-defined]
    job = await app.tasks["add"].enqueue(1, 2)
    await client.delete(keys.epoch)
    await client.hset(keys.epoch, "a", "b")  # the watch's check reads it every 2 s
    broker = RedisBroker(redis_url, prefix=keys.prefix)  # a fresh broker checks at once

    for _ in range(2):
        assert (await broker.get(job.id)) is not None
        assert (await broker.stats())["default"].queued == 1
        check_server_soon(broker)  # the check is due again
    lines = [r.getMessage() for r in caplog.records if keys.epoch in r.getMessage()]
    assert len(lines) == 1
    assert "holds a hash where taskit keeps a string" in lines[0]
    await broker.close()
    await client.aclose()


async def test_a_stray_entry_of_a_finished_job_never_hides_its_result(
    app: App, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = app.broker.keys  # type: ignore[attr-defined]
    job = await app.tasks["add"].enqueue(1, 2)
    await app.worker().run(burst=True)
    await client.rpush(keys.fifo("default"), job.id)  # its id ready again, its record long gone

    await app.worker().run(burst=True)  # meets the entry: dead-lettered, so it is seen

    assert [d.id for d in await app.broker.dead_letters("default")] == [job.id]
    stored = await app.get_job(job.id)
    assert stored is not None
    assert stored.status is JobStatus.COMPLETED  # the finished job, not the stray's trace
    assert (await app.result(job.id)).value == 3
    await client.aclose()


async def test_enqueue_over_a_dead_letter_whose_queue_is_not_utf8_names_it(
    app: App, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = app.broker.keys  # type: ignore[attr-defined]
    add = app.tasks["add"]
    job = await add.options(job_id="dl").enqueue(1, 2)
    await app.broker.reserve(["default"], count=1, lease=30, timeout=0)
    state, spec = split_record(await client.hget(keys.jobs, job.id))
    fields = state.split(b"|", 10)
    fields[0], fields[10] = b"dead_letter", BAD  # a dead letter of a queue named by damage
    await client.hset(keys.jobs, job.id, join_record(b"|".join(fields), spec))
    await client.zadd(keys.tag.encode() + b":q:" + BAD + b":dead", {job.id: 1})

    with pytest.raises(CorruptJobError, match="queue is not UTF-8") as caught:
        await add.options(job_id="dl").enqueue(3, 4)

    assert caught.value.job_id == "dl"
    assert (await client.hget(keys.jobs, job.id)).endswith(spec)  # nothing was replaced
    await client.aclose()


@pytest.mark.parametrize("kind", ["leases", "dead", "wake", "jobs", "err"])
async def test_a_key_of_the_wrong_type_never_strands_jobs_taken_out(
    app: App, redis_url: str, kind: str
) -> None:
    """Redis keeps a script's writes up to its error: reserve popped ready ids, then its write to
    a key of the wrong type failed, and the jobs were in no structure any more (lost)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = app.broker.keys  # type: ignore[attr-defined]
    add = app.tasks["add"]
    jobs = [await add.enqueue(i, i) for i in range(3)]
    due = await add.schedule(0.01, 5, 5)  # due at once: promote moves it too
    await anyio.sleep(0.05)
    name = getattr(keys, kind) if kind in ("jobs", "err") else getattr(keys, kind)("default")
    saved = await client.dump(name)
    await client.delete(name)
    await client.set(name, b"x")

    calls = [lambda: app.broker.reserve(["default"], count=5, lease=30, timeout=0)]
    if kind != "wake":  # stats promotes due jobs too; it has no wake list
        calls.append(lambda: app.broker.stats(["default"]))
    for call in calls:
        with pytest.raises(BrokerError, match="holds a string where taskit keeps"):
            await call()

    await client.delete(name)
    if saved is not None:
        await client.restore(name, 0, saved)
    assert await client.llen(keys.fifo("default")) == 3
    assert await client.zcard(keys.delayed("default")) == 1
    await app.worker().run(burst=True)  # once repaired, every job runs
    for job in [*jobs, due]:
        assert (await app.get_job(job.id)).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    await client.aclose()


async def test_every_script_that_moves_jobs_checks_its_keys_first(app: App, redis_url: str) -> None:
    """settle, reclaim, cancel and requeue_dead take a job out of one structure and write it to
    another: with one of their keys damaged they change nothing, and the job is where it was."""
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = app.broker.keys  # type: ignore[attr-defined]
    broker, add = app.broker, app.tasks["add"]
    await add.enqueue(0, 0)  # held below
    waiting = await add.enqueue(1, 1)
    await add.enqueue(2, 2)
    [held] = await broker.reserve(["default"], count=1, lease=0.05, timeout=0)
    await client.set(keys.ranked("default"), b"x")

    retry = Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.RETRY, delay=10)
    await anyio.sleep(0.1)  # its lease has expired too
    for call in (
        lambda: broker.settle([retry]),
        lambda: broker.reclaim(["default"], lease=30),
        lambda: broker.cancel(waiting.id),
        lambda: broker.requeue_dead("default"),
    ):
        with pytest.raises(BrokerError, match="holds a string where taskit keeps a zset"):
            await call()

    assert await client.zscore(keys.leases("default"), held.job.id) is not None
    assert await client.llen(keys.fifo("default")) == 2
    await client.delete(keys.ranked("default"))
    assert await broker.settle([retry]) == [True]  # repaired: it applies
    await client.aclose()
