"""A Redis out of memory (``maxmemory`` reached, ``maxmemory-policy noeviction``): every call that
ends, frees or moves stored jobs still applies; enqueue is refused whole with
``BrokerOutOfMemoryError``; the condition is logged once per interval.

Each test runs its own redis-server with a small ``maxmemory``, prepares its jobs, then fills
Redis with ballast until it refuses a write (``tests.broker._full``): from then on it is out of
memory, and it stays so, as nothing the test does frees enough.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import anyio
import pytest
import redis.exceptions

from taskit.broker.redis import RedisBroker
from taskit.broker.redis import watch as _watch
from taskit.broker.redis.errors import ErrorMap, error_of
from taskit.errors import BrokerOutOfMemoryError
from taskit.job import Job, JobStatus, Lease, LeaseState, Outcome, OutcomeKind, encode_arguments
from tests.broker._full import empty, fill, small_redis
from tests.broker._redis_kinds import OwnRedisServer, RedisHarness

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[OwnRedisServer]:
    with small_redis() as made:
        yield made


@pytest.fixture
async def broker(server: OwnRedisServer) -> AsyncIterator[RedisBroker]:
    made = RedisBroker(server.url, prefix="oom")
    try:
        yield made
    finally:
        await made.close()


def make_job(job_id: str | None = None) -> Job:
    return Job(
        id=job_id or uuid.uuid4().hex,
        task="tests.noop",
        queue="q",
        payload=encode_arguments((), {}),
        created_at=datetime.now(UTC),
    )


async def reserved(broker: RedisBroker, n: int, lease: float = 30.0) -> list[Lease]:
    await broker.enqueue([make_job() for _ in range(n)])
    leases = await broker.reserve(["q"], count=n, lease=lease, timeout=0)
    assert len(leases) == n
    return leases


def outcome(lease: Lease, kind: OutcomeKind, delay: float = 0.0) -> Outcome:
    error: dict[str, str] = {} if kind in (OutcomeKind.COMPLETE, OutcomeKind.RELEASE) else {
        "error": f"{kind.value} under memory pressure", "error_type": "RuntimeError",
        "traceback": "Traceback (most recent call last):\n" + "x" * 2000,
    }  # fmt: skip
    return Outcome(job_id=lease.job.id, token=lease.token, kind=kind, delay=delay, **error)


async def status(broker: RedisBroker, job_id: str) -> JobStatus:
    job = await broker.get(job_id)
    assert job is not None
    return job.status


async def test_settles_of_every_kind_apply_on_a_full_redis_a_batch_led_by_a_retry_too(
    server: OwnRedisServer, broker: RedisBroker
) -> None:
    leases = await reserved(broker, 7)
    await fill(server.url)
    kinds = [
        (OutcomeKind.RETRY, 0.0, JobStatus.PENDING),  # leads the batch
        (OutcomeKind.RETRY, 60.0, JobStatus.RETRYING),
        (OutcomeKind.FAIL, 0.0, JobStatus.FAILED),
        (OutcomeKind.DEAD_LETTER, 0.0, JobStatus.DEAD_LETTER),
        (OutcomeKind.CANCEL, 0.0, JobStatus.CANCELLED),
        (OutcomeKind.RELEASE, 0.0, JobStatus.PENDING),
        (OutcomeKind.COMPLETE, 0.0, JobStatus.COMPLETED),
    ]
    # Through a broker made now, as a worker started on the full Redis: its first call also
    # runs the server watch, whose own write must not make the settle fail.
    fresh = RedisBroker(server.url, prefix="oom")
    try:
        pairs = zip(leases, kinds, strict=True)
        batch = [outcome(lease, kind, delay) for lease, (kind, delay, _) in pairs]
        assert await fresh.settle(batch) == [True] * 7
    finally:
        await fresh.close()
    for lease, (_, _, want) in zip(leases, kinds, strict=True):
        assert await status(broker, lease.job.id) is want
    dead = await broker.dead_letters("q")
    assert [j.id for j in dead] == [leases[3].job.id]
    assert dead[0].error == "dead_letter under memory pressure"
    failed = await broker.get(leases[2].job.id)
    assert failed is not None
    assert failed.error == "fail under memory pressure"


async def test_expired_leases_are_reclaimed_and_settled_on_a_full_redis(
    server: OwnRedisServer, broker: RedisBroker
) -> None:
    leases = await reserved(broker, 3, lease=0.2)
    await fill(server.url)
    await anyio.sleep(0.3)
    taken = await broker.reclaim(["q"], lease=30)
    assert sorted(t.job.id for t in taken) == sorted(lease.job.id for lease in leases)
    assert await broker.settle([outcome(t, OutcomeKind.RETRY) for t in taken]) == [True] * 3
    again = await broker.reserve(["q"], count=3, lease=30, timeout=0)
    assert sorted(j.job.attempts for j in again) == [2, 2, 2]


async def test_extend_cancel_and_shutdown_release_apply_on_a_full_redis(
    server: OwnRedisServer, broker: RedisBroker
) -> None:
    running = await reserved(broker, 2)
    waiting, later = make_job(), make_job()
    await broker.enqueue([waiting])
    await broker.enqueue([later], delays=[60])
    await fill(server.url)
    assert await broker.extend(running, lease=30) == [LeaseState.HELD, LeaseState.HELD]
    assert await broker.cancel(running[0].job.id)  # running: cancel requested
    assert await broker.cancel(waiting.id)  # pending: cancelled at once
    assert await broker.cancel(later.id)  # scheduled: cancelled at once
    assert await broker.extend(running, lease=30) == [LeaseState.CANCELLED, LeaseState.HELD]
    release = outcome(running[0], OutcomeKind.RELEASE)  # a cancelled job handed back ends
    assert await broker.settle([release, outcome(running[1], OutcomeKind.RELEASE)]) == [True] * 2
    assert await status(broker, running[0].job.id) is JobStatus.CANCELLED
    assert await status(broker, running[1].job.id) is JobStatus.PENDING
    assert await status(broker, waiting.id) is JobStatus.CANCELLED
    assert await status(broker, later.id) is JobStatus.CANCELLED


async def test_reserve_heartbeat_stats_requeue_and_purge_work_on_a_full_redis(
    server: OwnRedisServer, broker: RedisBroker
) -> None:
    [dead] = await reserved(broker, 1)
    await broker.settle([outcome(dead, OutcomeKind.DEAD_LETTER)])
    await broker.enqueue([make_job() for _ in range(3)])
    await broker.enqueue([make_job()], delays=[0.05])
    await fill(server.url)
    await anyio.sleep(0.1)
    assert (await broker.stats(["q"]))["q"].queued == 4  # the due delayed job promoted
    assert len(await broker.reserve(["q"], count=2, lease=30, timeout=0)) == 2
    await broker.announce("w1", b"{}", ttl=30)
    assert "w1" in await broker.live()
    await broker.withdraw("w1")
    assert await broker.requeue_dead("q") == 1
    assert await broker.purge("q") == 3
    assert (await broker.stats(["q"]))["q"].running == 2


async def test_enqueue_on_a_full_redis_is_refused_whole_with_an_error_naming_maxmemory(
    server: OwnRedisServer, broker: RedisBroker
) -> None:
    [lease] = await reserved(broker, 1)
    await broker.settle([outcome(lease, OutcomeKind.DEAD_LETTER)])
    kept = make_job()
    await broker.enqueue([kept])
    await fill(server.url)
    fresh = [make_job() for _ in range(3)]
    batches = [
        [fresh[0]],
        [make_job(lease.job.id), fresh[1]],  # led by a job that replaces a dead letter
        [kept, fresh[2]],  # led by a job already stored
    ]
    for batch in batches:
        with pytest.raises(BrokerOutOfMemoryError, match="maxmemory"):
            await broker.enqueue(batch)
        with pytest.raises(BrokerOutOfMemoryError, match="maxmemory"):
            await anyio.to_thread.run_sync(broker.enqueue_blocking, batch)
    with pytest.raises(BrokerOutOfMemoryError, match="maxmemory"):
        await broker.enqueue([make_job()], delays=[60])
    for job in fresh:
        assert await broker.get(job.id) is None  # nothing half-stored
    assert await status(broker, lease.job.id) is JobStatus.DEAD_LETTER
    assert [j.id for j in await broker.dead_letters("q")] == [lease.job.id]
    # A batch of jobs that are all stored already writes nothing: it is answered.
    [again] = await broker.enqueue([make_job(kept.id)])
    assert again.status is JobStatus.PENDING


async def test_out_of_memory_is_logged_once_per_interval_and_its_end_once(
    server: OwnRedisServer,
    broker: RedisBroker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_watch, "FULL_LOG_INTERVAL", 0.4)
    monkeypatch.setattr(_watch, "CHECK_INTERVAL", 0.0)
    await broker.stats(["q"])
    await fill(server.url)
    caplog.set_level(logging.INFO, logger="taskit.broker")
    began = anyio.current_time()
    refused = 0
    while anyio.current_time() - began < 1.0:
        with pytest.raises(BrokerOutOfMemoryError):
            await broker.enqueue([make_job()])
        refused += 1
        await anyio.sleep(0.01)
    full = [r for r in caplog.records if "is out of memory" in r.getMessage()]
    assert refused > 20
    assert 2 <= len(full) <= 4, [r.getMessage() for r in full]
    assert all(r.levelno == logging.WARNING and "maxmemory" in r.getMessage() for r in full)
    await empty(server.url)
    await broker.stats(["q"])  # the watch's probe passes again
    await broker.stats(["q"])
    back = [r for r in caplog.records if "accepts writes again" in r.getMessage()]
    assert len(back) == 1
    # Memory that comes and goes within one interval logs nothing more.
    monkeypatch.setattr(_watch, "FULL_LOG_INTERVAL", 60.0)
    caplog.clear()
    for _ in range(2):
        await fill(server.url)
        with pytest.raises(BrokerOutOfMemoryError):
            await broker.enqueue([make_job()])
        await empty(server.url)
        await broker.stats(["q"])
    assert not [r for r in caplog.records if "memory" in r.getMessage()]


def test_out_of_memory_replies_of_redis_6_and_7_map_to_one_error() -> None:
    errors = ErrorMap("redis://:secret@127.0.0.1:1/0", "secret")
    replies = [
        "OOM command not allowed when used memory > 'maxmemory'.",
        "OOM command not allowed when used memory > 'maxmemory'. script: 1f2e, on @user_script:3.",
        "ERR Error running script (call to f_1f2e): @user_script:3: @user_script: 3: -OOM command "
        "not allowed when used memory > 'maxmemory'.",
    ]
    for text in replies:
        mapped = error_of(redis.exceptions.ResponseError(text))
        assert isinstance(mapped, redis.exceptions.OutOfMemoryError)
        for exc in (mapped, redis.exceptions.ResponseError(text)):
            error = errors.translate(exc)
            assert isinstance(error, BrokerOutOfMemoryError)
            assert "maxmemory" in str(error)
            assert "secret" not in str(error)


async def test_a_batch_replacing_a_dead_letter_twice_keeps_no_trace_of_it(rh: RedisHarness) -> None:
    # enqueue removes a replaced dead letter's leftovers last (so a full Redis refuses it at its
    # first write): a second copy of the id in the same batch must still see the job stored now.
    [lease] = await reserved(rh.broker, 1)
    await rh.broker.settle([outcome(lease, OutcomeKind.DEAD_LETTER)])
    first, second = await rh.broker.enqueue([make_job(lease.job.id), make_job(lease.job.id)])
    for job in (first, second):
        assert job.status is JobStatus.PENDING
        assert job.error is None
    assert await rh.broker.dead_letters("q") == []
    stored = await rh.broker.get(lease.job.id)
    assert stored is not None
    assert stored.error is None
