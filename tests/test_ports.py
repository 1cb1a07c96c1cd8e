"""Ports as other job kits write them: the ``JobCreator`` protocol that ``JobService`` satisfies,
``create_job(job_type, payload, queue_name=..., priority=...)``, and ``process_one`` running one
job here. Each broker-facing test runs on the memory broker and on the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
import pytest
import redis

import taskit
from taskit import App, Job, JobCreator, JobResult, JobService, JobStatus, MemoryBroker, Settings
from taskit.broker.redis import RedisBroker
from taskit.errors import BrokerConnectionError, Retry
from taskit.events import EventKind, JobEvent
from taskit.oneshot import process_one
from taskit.worker import WorkerParts

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only


@pytest.fixture(params=["memory", "redis"])
async def app(request: pytest.FixtureRequest) -> AsyncIterator[App]:
    settings = Settings(backoff=0.0, visibility_timeout=30.0)
    if request.param == "memory":
        yield _tasks(App(MemoryBroker(), settings=settings))
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"i13-ports-{uuid.uuid4().hex[:10]}"
    the_app = _tasks(App(RedisBroker(url, prefix=prefix), settings=settings))
    try:
        yield the_app
    finally:
        await the_app.close()
        client = redis.Redis.from_url(url)
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()


def _tasks(app: App) -> App:
    @app.task(name="email.send")
    async def send(to: str, subject: str = "") -> str:
        return f"sent to {to}: {subject}"

    @app.task(name="flaky", max_retries=1)
    async def flaky() -> None:
        raise OSError("SMTP down")

    @app.task(name="slow")
    async def slow(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "done"

    @app.task(name="again", max_retries=3)
    async def again() -> None:
        raise Retry(delay=60)

    return app


# -- JobCreator ------------------------------------------------------------------------------
class RecordingCreator:
    """A fake JobCreator, as an adapter's test would write one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Mapping[str, Any], str | None, int | None]] = []

    async def create_job(
        self,
        job_type: str,
        payload: Mapping[str, Any],
        queue_name: str | None = None,
        priority: int | None = None,
    ) -> Job:
        self.calls.append((job_type, payload, queue_name, priority))
        return Job(
            id="j1", task=job_type, queue=queue_name or "default", payload=msgspec.Raw(b"\x80"),
            created_at=datetime.now(UTC),
        )  # fmt: skip


async def welcome(jobs: JobCreator, email: str) -> Job:
    """An adapter that depends on the port only."""
    return await jobs.create_job("email.send", {"to": email}, queue_name="emails", priority=5)


async def test_job_service_is_a_job_creator_and_taskit_exports_the_port() -> None:
    assert taskit.JobCreator is JobCreator
    assert "JobCreator" in taskit.__all__
    service = JobService(App(MemoryBroker()))
    assert isinstance(service, JobCreator)
    assert isinstance(RecordingCreator(), JobCreator)
    assert not isinstance(object(), JobCreator)
    fake = RecordingCreator()
    await welcome(fake, "ada@example.com")
    assert fake.calls == [("email.send", {"to": "ada@example.com"}, "emails", 5)]


async def test_create_job_takes_the_ports_spelling(app: App) -> None:
    service = JobService(app)
    job = await welcome(service, "ada@example.com")
    assert (job.task, job.queue, job.priority, job.kwargs) == (
        "email.send", "emails", 5, {"to": "ada@example.com"},
    )  # fmt: skip
    by_position = await service.create_job("email.send", {"to": "bob@example.com"}, "mail", 2)
    assert (by_position.queue, by_position.priority) == ("mail", 2)
    named = await service.create_job(
        job_type="email.send", payload={"to": "cy@example.com"}, queue_name="mail"
    )
    assert (named.queue, named.priority) == ("mail", 0)
    today = await service.create_job("email.send", {"to": "di@example.com"}, queue="mail")
    assert today.queue == "mail"
    stored = await service.get_job(job.id)
    assert stored is not None
    assert (stored.queue, stored.priority) == ("emails", 5)


async def test_create_job_refuses_both_queue_spellings_with_nothing_enqueued(app: App) -> None:
    service = JobService(app)
    with pytest.raises(TypeError, match="queue or queue_name, not both"):
        await service.create_job("email.send", {"to": "a"}, queue_name="a", queue="b")
    with pytest.raises(TypeError, match="queue or queue_name, not both"):
        service.create_job_sync("email.send", {"to": "a"}, "a", queue="a")
    with pytest.raises(ValueError, match="queue must be a non-empty string"):
        await service.create_job("email.send", {"to": "a"}, queue_name=" ")
    # the port's promise: an unregistered type is a ValueError
    with pytest.raises(ValueError, match="nope"):
        await service.create_job("nope", {}, queue_name="a")
    assert (await service.get_job_stats()).queued == 0


def test_create_job_sync_takes_the_ports_spelling() -> None:
    service = JobService(_tasks(App(MemoryBroker())))
    job = service.create_job_sync("email.send", {"to": "ada@example.com"}, "emails", 3)
    assert (job.queue, job.priority) == ("emails", 3)


# -- process_one -----------------------------------------------------------------------------
async def test_process_one_runs_one_job_and_returns_its_result(app: App) -> None:
    service = JobService(app)
    assert await service.process_one() is None
    assert await service.process_one("emails", timeout=0.05) is None
    first = await service.create_job("email.send", {"to": "ada", "subject": "hi"})
    second = await service.create_job("email.send", {"to": "bob"})
    result = await service.process_one()
    assert isinstance(result, JobResult)
    assert (result.success, result.value) == (True, "sent to ada: hi")
    assert result.duration is not None
    assert result.duration >= 0
    done = await service.get_job(first.id)
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 1
    still = await service.get_job(second.id)
    assert still is not None
    assert still.status is JobStatus.PENDING
    assert (await service.process_one("default")) is not None
    assert await service.process_one() is None


async def test_process_one_takes_queues_in_order(app: App) -> None:
    service = JobService(app)
    low = await service.create_job("email.send", {"to": "low"}, queue_name="low")
    await service.create_job("email.send", {"to": "high"}, queue_name="high")
    result = await service.process_one(["high", "low"])
    assert result is not None
    assert result.value == "sent to high: "
    result = await service.process_one(["high", "low"])
    assert result is not None
    assert result.value == "sent to low: "
    job = await service.get_job(low.id)
    assert job is not None
    assert job.status is JobStatus.COMPLETED


async def test_process_one_settles_failures_as_a_worker_does(app: App) -> None:
    service = JobService(app)
    job = await service.create_job("flaky", {})
    result = await service.process_one()
    assert result is not None
    assert not result.success
    assert (result.error, result.error_type) == ("SMTP down", "OSError")
    retrying = await service.get_job(job.id)
    # backoff 0: due again at once (the memory broker makes it PENDING, Redis RETRYING)
    assert retrying is not None
    assert retrying.status in (JobStatus.RETRYING, JobStatus.PENDING)
    result = await service.process_one(timeout=5.0)
    assert result is not None
    assert not result.success
    dead = await service.get_job(job.id)
    assert dead is not None
    assert dead.status is JobStatus.DEAD_LETTER
    assert dead.attempts == 2
    asked = await service.create_job("again", {})
    result = await service.process_one()
    assert result is not None
    assert (result.success, result.error_type) == (False, "Retry")
    later = await service.get_job(asked.id)
    assert later is not None
    assert later.status is JobStatus.RETRYING


async def test_process_one_keeps_the_lease_of_a_job_longer_than_it() -> None:
    app = _tasks(App(MemoryBroker(), settings=Settings(visibility_timeout=0.3)))
    service = JobService(app)
    job = await service.create_job("slow", {"seconds": 0.8})
    result = await service.process_one()
    assert result is not None
    assert result.value == "done"
    done = await service.get_job(job.id)
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 1


async def test_process_one_cancelled_hands_the_job_back(app: App) -> None:
    service = JobService(app)
    job = await service.create_job("slow", {"seconds": 30})
    with anyio.move_on_after(0.3):
        await service.process_one()
    back = await service.get_job(job.id)
    assert back is not None
    assert back.status is JobStatus.PENDING
    assert back.attempts == 0


async def test_process_one_tells_the_events_and_runs_without_an_app() -> None:
    app = _tasks(App(MemoryBroker()))
    seen: list[JobEvent] = []
    app.events.subscribe(seen.append)
    await JobService(app).create_job("email.send", {"to": "ada"})
    parts = WorkerParts(broker=app.broker, tasks=app.tasks, events=app.events)
    result = await process_one(parts, "default", name="script")
    assert result is not None
    assert result.success
    assert [e.kind for e in seen] == [EventKind.CREATED, EventKind.STARTED, EventKind.COMPLETED]
    assert seen[-1].worker == "script"
    with pytest.raises(ValueError, match="non-empty names"):
        await process_one(parts, [" "])


async def test_process_one_raises_a_settle_error_unwrapped(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = JobService(app)
    seen: list[JobEvent] = []
    app.events.subscribe(seen.append)
    await service.create_job("email.send", {"to": "ada"})

    async def down(outcomes: object) -> list[bool]:
        raise BrokerConnectionError("broker down")

    monkeypatch.setattr(app.broker, "settle", down)
    with pytest.raises(BrokerConnectionError, match="broker down"):
        await service.process_one()
    assert [e.kind for e in seen] == [EventKind.CREATED, EventKind.STARTED]
