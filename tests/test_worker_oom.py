"""A worker on a Redis out of memory (``maxmemory``, ``noeviction``) keeps going: its jobs are
retried, failed, dead-lettered, completed and reclaimed as usual, and it says that Redis is full
once per interval, not once per job."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import anyio
import pytest

from taskit import App, Fail, JobStatus, Settings
from taskit.broker.redis import RedisBroker
from taskit.broker.redis import watch as _watch
from taskit.worker import Worker
from tests.broker._full import fill, small_redis
from tests.broker._redis_kinds import OwnRedisServer

pytestmark = pytest.mark.anyio

LOG_INTERVAL = 0.5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[OwnRedisServer]:
    with small_redis() as made:
        yield made


async def test_a_worker_on_a_full_redis_settles_every_kind_and_logs_once_per_interval(
    server: OwnRedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_watch, "FULL_LOG_INTERVAL", LOG_INTERVAL, raising=False)
    monkeypatch.setattr(_watch, "CHECK_INTERVAL", 0.1)
    settings = Settings(
        visibility_timeout=1.0, reaper_interval=0.1, backoff=0.0, max_retries=2,
        heartbeat_interval=0.2, grace_period=1.0,
    )  # fmt: skip
    app = App(RedisBroker(server.url, prefix="w"), settings=settings)

    @app.task(name="ok")
    async def ok() -> str:
        return "done"

    @app.task(name="flaky")
    async def flaky() -> None:
        raise RuntimeError("boom")  # retried twice, then dead-lettered

    @app.task(name="refuse")
    async def refuse() -> None:
        raise Fail("no")

    try:
        jobs = {
            "ok": [await ok.enqueue() for _ in range(10)],
            "flaky": [await flaky.enqueue() for _ in range(10)],
            "refuse": [await refuse.enqueue() for _ in range(5)],
        }
        # Leases of a worker that died: the live worker's reaper must take them over.
        orphans = await app.broker.reserve(["default"], count=5, lease=0.3, timeout=0)
        await fill(server.url)
        caplog.set_level(logging.INFO)
        began = anyio.current_time()
        with anyio.fail_after(30):
            stats = await Worker(app, concurrency=4).run(burst=True)
        took = anyio.current_time() - began
        want = {"ok": JobStatus.COMPLETED, "flaky": JobStatus.DEAD_LETTER,
                "refuse": JobStatus.FAILED}  # fmt: skip
        for name, made in jobs.items():
            for job in made:
                got = await app.get_job(job.id)
                assert got is not None
                assert got.status is want[name], (name, got)
        assert {lease.job.id for lease in orphans} <= {j.id for j in jobs["ok"] + jobs["refuse"]}
        assert stats.dead_lettered == 10
        assert stats.retried == 20
    finally:
        await app.close()
    full = [r for r in caplog.records if "maxmemory" in r.getMessage()]
    assert 1 <= len(full) <= took / LOG_INTERVAL + 2, [r.getMessage() for r in full]
    assert all(r.name == "taskit.broker.redis.watch" for r in full)
