"""Job expiry: ``expires`` (a per-call option) travels with the job as ``expires_at``; a job no
worker started by then is dropped unrun, CANCELLED with ``error_type`` "Expired" and the reason
as its error, as Celery revokes an expired task. End to end through the worker on memory, real
Redis and fakeredis, and through a ``Harness`` on its fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from taskit import App, Job, JobService, JobStatus, MemoryBroker, Settings
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


async def stored(app: App, job_id: str) -> Job:
    job = await app.get_job(job_id)
    assert job is not None
    return job


@pytest.mark.parametrize("kind", KINDS)
async def test_a_job_not_started_in_time_is_dropped_unrun_with_a_reason(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, request) as app:
        runs: list[str] = []
        hooked: list[str] = []

        @app.task(on_failure=lambda job, error: hooked.append(job.id))
        async def send(to: str) -> str:
            runs.append(to)
            return to

        late = await send.options(expires=0.05).enqueue("late")
        past = await send.options(expires=datetime.now(UTC) - timedelta(minutes=1)).enqueue("past")
        fresh = await send.options(expires=60).enqueue("fresh")
        assert late.expires_at == late.created_at + timedelta(seconds=0.05)
        assert (await stored(app, fresh.id)).expires_at == fresh.expires_at
        await anyio.sleep(0.1)
        with anyio.fail_after(WAIT):
            stats = await app.worker(concurrency=1).run(burst=True)

        assert runs == ["fresh"]
        assert hooked == []  # dropped, not failed
        assert (stats.completed, stats.cancelled, stats.failed) == (1, 2, 0)
        for job in (late, past):
            dropped = await stored(app, job.id)
            assert (dropped.status, dropped.error_type) == (JobStatus.CANCELLED, "Expired")
            assert dropped.error is not None
            assert "expired at" in dropped.error
            assert dropped.result is None
        assert (await stored(app, fresh.id)).status is JobStatus.COMPLETED


@pytest.mark.parametrize("kind", KINDS)
async def test_create_job_takes_expires(kind: str, request: pytest.FixtureRequest) -> None:
    async with app_on(kind, request) as app:

        @app.task(name="report")
        async def report(day: str) -> str:
            return day

        at = datetime(2030, 1, 1, 12, tzinfo=UTC)
        job = await JobService(app).create_job("report", {"day": "mon"}, expires=at)
        assert (await stored(app, job.id)).expires_at == at


async def test_a_scheduled_job_expires_when_its_due_time_comes_too_late() -> None:
    """``expires`` counts from the enqueue, not from the due time, as Celery's does."""
    app = App(MemoryBroker(), settings=Settings())
    runs: list[int] = []

    @app.task(name="nightly")
    async def nightly(n: int) -> None:
        runs.append(n)

    with Harness(app) as harness:
        dropped = await nightly.options(expires=30).schedule(60, 1)
        kept = await nightly.options(expires=120).schedule(60, 2)
        await harness.drain()  # moves the fake clock to the due time, 60 s on
        assert (await stored(app, dropped.id)).status is JobStatus.CANCELLED
        assert (await stored(app, kept.id)).status is JobStatus.COMPLETED
    assert runs == [2]
