"""End to end across processes: `taskit worker` subprocesses on real Redis run jobs that this
process enqueues by name (it does not import the workers' code)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
import redis

from taskit import App, BrokerConnectionError, Job, JobStatus
from tests.e2e.helpers import redis_server, worker_process

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.apps.e2e_app:app"
# A database of its own on the shared server, flushed before and after each test: these tests
# stay in this one module, which pytest-xdist's --dist loadfile (scripts/test.sh) runs in one
# worker, one test after another.
E2E_DB = 9


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client


@dataclass
class E2E:
    url: str
    app: App
    sync: redis.Redis
    ledger: str = "e2e:ledger"

    @property
    def env(self) -> dict[str, str]:
        return {"TASKIT_BROKER_URL": self.url, "E2E_LEDGER": self.ledger}

    def entries(self) -> list[tuple[str, int, float]]:
        """The ledger: (entry, worker pid, time) per handler run, in order."""
        out = []
        for raw in self.sync.lrange(self.ledger, 0, -1):
            entry, pid, stamp = raw.decode().rsplit("|", 2)
            out.append((entry, int(pid), float(stamp)))
        return out


@pytest.fixture
async def e2e(redis_url: str) -> AsyncIterator[E2E]:
    url = redis_url.rsplit("/", 1)[0] + f"/{E2E_DB}"
    sync = redis.Redis.from_url(url)
    sync.flushdb()
    app = App(url)
    try:
        yield E2E(url, app, sync)
    finally:
        await app.close()
        sync.flushdb()
        sync.close()


async def test_jobs_enqueued_here_run_in_a_worker_process(e2e: E2E) -> None:
    with worker_process(APP, e2e.env, "-c", "4"):
        job = await e2e.app.remote("e2e.add").enqueue(2, 3)
        result = await e2e.app.result(job.id, timeout=15)
        assert result.success
        assert result.value == 5
        final = await e2e.app.get_job(job.id)
        assert final is not None
        assert final.status is JobStatus.COMPLETED
        assert final.attempts == 1


async def test_delayed_job_runs_at_its_time_not_before(e2e: E2E) -> None:
    with worker_process(APP, e2e.env, "-c", "2"):
        asked = time.time()
        job = await e2e.app.remote("e2e.record").schedule(timedelta(seconds=0.6), "late")
        assert job.status is JobStatus.SCHEDULED
        await e2e.app.result(job.id, timeout=15)
    (entry, _, ran_at) = e2e.entries()[0]
    assert entry == "late"
    assert ran_at >= asked + 0.6


async def test_aware_datetime_schedule(e2e: E2E) -> None:
    with worker_process(APP, e2e.env):
        when = datetime.now(UTC) + timedelta(seconds=0.3)
        job = await e2e.app.remote("e2e.record").schedule(when, "at-time")
        await e2e.app.result(job.id, timeout=15)
    assert e2e.entries()[0][2] >= when.timestamp()


async def test_priorities_run_highest_first(e2e: E2E) -> None:
    record = e2e.app.remote("e2e.record")
    jobs = []
    for i in range(3):
        jobs.append(await record.options(priority=0).enqueue(f"low{i}"))
        jobs.append(await record.options(priority=10).enqueue(f"high{i}"))
    jobs.append(await record.options(priority=5).enqueue("mid"))
    with worker_process(APP, e2e.env, "-c", "1"):
        for job in jobs:
            await e2e.app.result(job.id, timeout=15)
    order = [entry for entry, _, _ in e2e.entries()]
    assert order == ["high0", "high1", "high2", "mid", "low0", "low1", "low2"]


async def test_failing_job_is_retried_in_the_worker_until_it_succeeds(e2e: E2E) -> None:
    with worker_process(APP, e2e.env, "-c", "2"):
        job = await e2e.app.remote("e2e.flaky").enqueue("f1", 2)
        result = await e2e.app.result(job.id, timeout=15)
    assert result.value == "f1 ok after 3"
    final = await e2e.app.get_job(job.id)
    assert final is not None
    assert final.attempts == 3
    assert final.error == "failure 2 of 2"  # the last failure stays on the job


async def test_job_that_always_fails_is_dead_lettered(e2e: E2E) -> None:
    with worker_process(APP, e2e.env, "-c", "2"):
        job = await e2e.app.remote("e2e.flaky").enqueue("f2", 99)
        result = await e2e.app.result(job.id, timeout=15)
    assert not result.success
    final = await e2e.app.get_job(job.id)
    assert final is not None
    assert final.status is JobStatus.DEAD_LETTER
    assert final.attempts == 4  # max_retries=3: the first run and three retries
    dead = await e2e.app.broker.dead_letters("default")
    assert [j.id for j in dead] == [job.id]


async def test_cancelled_job_never_runs(e2e: E2E) -> None:
    record = e2e.app.remote("e2e.record")
    doomed = await record.schedule(timedelta(seconds=0.5), "cancelled")
    assert await e2e.app.cancel(doomed.id)
    with worker_process(APP, e2e.env):
        marker = await record.schedule(timedelta(seconds=0.7), "after")
        await e2e.app.result(marker.id, timeout=15)
    assert [entry for entry, _, _ in e2e.entries()] == ["after"]
    final = await e2e.app.get_job(doomed.id)
    assert final is not None
    assert final.status is JobStatus.CANCELLED


async def test_unique_job_id_runs_once(e2e: E2E) -> None:
    record = e2e.app.remote("e2e.record")
    first = await record.options(job_id="unique-1").enqueue("once")
    second = await record.options(job_id="unique-1").enqueue("twice")
    assert second.id == first.id
    with worker_process(APP, e2e.env):
        await e2e.app.result(first.id, timeout=15)
    assert [entry for entry, _, _ in e2e.entries()] == ["once"]


async def test_two_workers_share_the_queue_and_run_each_job_once(e2e: E2E) -> None:
    record = e2e.app.remote("e2e.record")
    jobs = await e2e.app.enqueue_many([record.prepare(f"j{i}") for i in range(200)])
    with worker_process(APP, e2e.env, "-c", "4"), worker_process(APP, e2e.env, "-c", "4"):
        for job in jobs:
            await e2e.app.result(job.id, timeout=30)
    entries = [entry for entry, _, _ in e2e.entries()]
    assert sorted(entries) == sorted(f"j{i}" for i in range(200))


async def test_worker_survives_a_redis_restart(tmp_path: Path) -> None:
    """kill -9 the broker under a running worker: the worker neither exits nor spins, and once
    Redis is back (empty: no persistence) it runs new jobs again."""
    with redis_server(tmp_path) as server:
        app = App(server.url)
        env = {"TASKIT_BROKER_URL": server.url, "E2E_LEDGER": "e2e:ledger"}
        try:
            with worker_process(APP, env, "-c", "2") as worker:
                before = await app.remote("e2e.add").enqueue(1, 1)
                assert (await app.result(before.id, timeout=15)).value == 2
                server.kill()
                worker.wait_for_line("failed")  # it noticed the outage
                cpu = worker.cpu_seconds()
                await anyio.sleep(2.0)  # a stretch of outage, to measure what it costs
                assert worker.proc.poll() is None, worker.log
                assert worker.cpu_seconds() - cpu < 0.5, "the worker spins while Redis is down"
                server.start()
                after = await _enqueue_when_up(app)
                assert (await app.result(after.id, timeout=20)).value == 5
                assert worker.terminate() == 0
        finally:
            await app.close()


async def _enqueue_when_up(app: App) -> Job:
    with anyio.fail_after(10):
        while True:
            try:
                job: Job = await app.remote("e2e.add").enqueue(2, 3)
                return job
            except BrokerConnectionError:
                await anyio.sleep(0.1)  # the test's own client reconnecting
