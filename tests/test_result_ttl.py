"""Result retention per job: ``result_ttl`` (a task option and a per-call one) travels with the
job, and the broker keeps the finished job that long (0: no record past the settle). Every
spelling takes it; the worker carries it to the settle on memory, real Redis and fakeredis; a
``Harness`` judges it on its fake clock; ``taskit job`` shows it. (The brokers' own promise is in
``tests/broker/test_conformance_result_ttl.py``.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio
import pytest
import redis
from click.testing import CliRunner

from taskit import App, Fail, Job, JobResult, JobService, JobStatus, MemoryBroker, Settings
from taskit.broker.redis import RedisBroker
from taskit.cli import main
from taskit.handlers import JobHandler
from taskit.testing import Harness
from tests.broker._redis_kinds import open_redis_harness

pytestmark = pytest.mark.anyio

WAIT = 10.0  # a hang fails the test instead of stalling the run
KINDS = ["memory", "fast-real", "redispy-fakeredis"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only; the memory kind runs here alike


@asynccontextmanager
async def app_on(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[App]:
    settings = Settings(backoff=0.0)
    if kind == "memory":
        yield App(MemoryBroker(), settings=settings)
        return
    async with open_redis_harness(kind, request) as harness:
        yield App(harness.broker, settings=settings)


class Echo(JobHandler):
    job_type = "echo"

    async def handle(self, job: Job) -> JobResult:
        return JobResult(success=True, value=job.kwargs)


async def test_every_spelling_puts_the_ttl_on_the_job_in_seconds() -> None:
    app = App(MemoryBroker(), settings=Settings())

    @app.task(name="kept", result_ttl=timedelta(minutes=5))
    async def kept(n: int) -> int:
        return n

    @app.task(name="plain")
    async def plain(n: int) -> int:
        return n

    echo = app.register(Echo(), result_ttl=30)
    service = JobService(app)

    assert (await kept.enqueue(1)).result_ttl == 300.0
    assert (await kept.options(result_ttl=0).enqueue(1)).result_ttl == 0.0  # per call wins
    assert (await plain.enqueue(1)).result_ttl is None  # the broker's own applies
    assert (await echo.enqueue(a=1)).result_ttl == 30.0
    assert (await service.create_job("plain", {"n": 1}, result_ttl=12.5)).result_ttl == 12.5
    assert (await service.create_job("kept", {"n": 1})).result_ttl == 300.0
    assert (await app.remote("elsewhere", result_ttl=7).enqueue()).result_ttl == 7.0
    shown = (await kept.enqueue(2)).to_builtins()
    assert shown["result_ttl"] == 300.0
    await app.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_the_worker_settles_each_job_with_its_own_ttl(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, request) as app:

        @app.task(name="work", max_retries=1)
        async def work(how: str) -> str:
            if how == "fail":
                raise Fail("expected")
            if how == "raise":
                raise RuntimeError("retried, then dead")
            return how

        forgotten = await work.options(result_ttl=0).enqueue("ok")
        failed = await work.options(result_ttl=0).enqueue("fail")
        dead = await work.options(result_ttl=0).enqueue("raise")
        kept = await work.enqueue("ok")
        with anyio.fail_after(WAIT):
            stats = await app.worker(concurrency=1).run(burst=True)

        assert (stats.completed, stats.failed, stats.dead_lettered) == (2, 1, 1)
        assert await app.get_job(forgotten.id) is None
        assert await app.get_job(failed.id) is None
        kept_now = await app.get_job(kept.id)
        assert kept_now is not None
        assert kept_now.status is JobStatus.COMPLETED
        dead_now = await app.get_job(dead.id)  # a dead letter keeps no TTL of its own
        assert dead_now is not None
        assert dead_now.status is JobStatus.DEAD_LETTER
        assert dead_now.result_ttl == 0.0


async def test_a_harness_drops_a_finished_job_when_its_ttl_passes_on_the_fake_clock() -> None:
    app = App(MemoryBroker(), settings=Settings())

    @app.task(name="t")
    async def t(n: int) -> int:
        return n

    with Harness(app) as harness:
        short = await t.options(result_ttl=10).enqueue(1)
        kept = await t.enqueue(2)  # the Harness keeps finished jobs for ever by default
        await harness.drain()
        assert (await app.get_job(short.id)) is not None
        harness.clock.advance(9)
        assert (await app.get_job(short.id)) is not None
        harness.clock.advance(2)
        assert await app.get_job(short.id) is None
        assert (await app.get_job(kept.id)) is not None


@pytest.mark.redis
def test_taskit_job_shows_the_ttl(redis_url: str) -> None:
    from tests.apps import ops_app

    saved = ops_app.app.broker
    ops_app.app.broker = broker = RedisBroker(redis_url, prefix=f"ops-{uuid.uuid4().hex[:10]}")
    try:
        add = ops_app.app.get_task("ops.add")
        job = add.options(result_ttl=timedelta(minutes=90)).enqueue_sync(2, 3)
        runner = CliRunner()
        text = runner.invoke(main, ["job", "tests.apps.ops_app:app", job.id]).output
        shown = runner.invoke(main, ["job", "tests.apps.ops_app:app", job.id, "--json"]).output
        assert "result_ttl:   5400 s" in text
        assert json.loads(shown)["result_ttl"] == 5400.0
    finally:
        ops_app.app.broker = saved
        client = redis.Redis.from_url(redis_url)
        doomed = list(client.scan_iter(match=broker.keys.pattern(), count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
