"""Progress on the real Redis: a worker's job reports, another client (its own broker and
connections, as a web process would have) reads it mid-job and after, and ``taskit job`` shows
it. Waits on events, never on sleeps."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest
import redis

from taskit import App, JobStatus, Settings, report_progress
from taskit.broker.redis import RedisBroker
from taskit.events import EventKind, JobEvent
from taskit.job import Job, ProgressUpdate, encode_arguments
from taskit.progress import make_progress
from tests.test_admin_cli import broker, ok  # the fixture (ops_app on its own prefix) and runner

__all__ = ["broker"]

pytestmark = pytest.mark.redis

WAIT = 10.0


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = f"progress-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    doomed = list(client.scan_iter(match="{" + name + "}*", count=500))
    if doomed:
        client.delete(*doomed)
    client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_another_client_reads_progress_mid_job_and_after(
    redis_url: str, prefix: str, anyio_backend: str
) -> None:
    app = App(RedisBroker(redis_url, prefix=prefix), settings=Settings(progress_interval=0.05))
    reader = RedisBroker(redis_url, prefix=prefix)  # another client: shares nothing in memory
    gate, flushed = anyio.Event(), anyio.Event()
    seen: list[JobEvent] = []

    @app.on(EventKind.PROGRESS)
    def on_progress(event: JobEvent) -> None:
        seen.append(event)
        flushed.set()

    @app.task(name="progress.export")
    async def export(rows: int) -> int:
        for row in range(1, rows + 1):
            report_progress(row / rows / 2, f"read {row} rows", rows=row)
        await gate.wait()  # the test reads the progress while the job still runs
        report_progress(1.0, "written")
        return rows

    job = await export.enqueue(500)
    async with app.worker(concurrency=1):
        with anyio.fail_after(WAIT):
            await flushed.wait()
            mid = await reader.get(job.id)
            assert mid is not None
            assert mid.progress is not None
            assert mid.status is JobStatus.RUNNING
            assert (mid.progress.fraction, mid.progress.message) == (0.5, "read 500 rows")
            assert mid.progress.data == {"rows": 500}
            gate.set()
            await app.result(job.id, timeout=WAIT)

    final = await reader.get(job.id)
    assert final is not None
    assert final.progress is not None
    assert final.status is JobStatus.COMPLETED
    assert (final.progress.fraction, final.progress.message) == (1.0, "written")
    assert [e.progress for e in seen][-1] == final.progress
    assert len(seen) == 2  # one flush mid-job, one before the settle: coalesced
    await reader.close()
    await app.close()


def test_taskit_job_shows_the_progress(broker: RedisBroker) -> None:
    async def running_job_with_progress() -> str:
        job = (await broker.enqueue([_job("ops.add")]))[0]
        [lease] = await broker.reserve([job.queue], count=1, lease=30, timeout=0)
        reported = make_progress(0.4, "copying files", {"files": 4})
        await broker.set_progress([ProgressUpdate(job.id, lease.token, reported)])
        await broker.close()
        return job.id

    job_id = anyio.run(running_job_with_progress)

    text = ok("job", "tests.apps.ops_app:app", job_id)
    assert 'progress:     40% copying files {"files": 4} (at ' in text
    data = json.loads(ok("job", "tests.apps.ops_app:app", job_id, "--json"))
    assert (data["status"], data["progress"]["fraction"]) == ("running", 0.4)
    assert data["progress"]["data"] == {"files": 4}


def _job(task: str) -> Job:
    return Job(id=uuid.uuid4().hex, task=task, queue="default",
               payload=encode_arguments([1, 2], {}), created_at=datetime.now(UTC))  # fmt: skip
