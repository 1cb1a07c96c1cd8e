"""The job-service operations (create by type, get, cancel, stats), the worker manager, and the
registry: listing tasks, unknown tasks, and the default job timeout."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from taskit import (
    App,
    Job,
    JobResult,
    JobStatus,
    JobTimeoutError,
    MemoryBroker,
    SerializationError,
    Settings,
    UnknownTaskError,
)
from taskit.handlers import JobHandler
from taskit.service import JobService, JobStats, WorkerManager

pytestmark = pytest.mark.anyio

WAIT = 10.0


class Report(JobHandler):
    job_type = "report.generate"

    async def handle(self, job: Job) -> JobResult:
        return JobResult(success=True, value=f"report {job.kwargs['month']}")


def make_app(**settings: Any) -> App:
    settings.setdefault("backoff", 0.0)
    app = App(MemoryBroker(), settings=Settings(**settings))
    app.register(Report())

    @app.task(name="math.add")
    async def add(a: int, b: int) -> int:
        return a + b

    return app


async def test_create_job_with_every_option() -> None:
    app = make_app()
    service = JobService(app)
    user = uuid.uuid4()
    job = await service.create_job(
        "report.generate",
        {"month": "2025-03"},
        queue="reports",
        priority=5,
        max_retries=7,
        created_by=user,
        metadata={"department": "finance"},
    )
    assert (job.task, job.queue, job.priority, job.max_retries) == (
        "report.generate",
        "reports",
        5,
        7,
    )
    assert job.created_by == str(user)
    assert job.metadata == {"department": "finance"}
    assert job.kwargs == {"month": "2025-03"}
    assert job.status is JobStatus.PENDING
    assert await service.get_job(job.id) == job


async def test_create_job_for_a_decorated_function_binds_the_payload_as_keywords() -> None:
    app = make_app()
    service = JobService(app)
    job = await service.create_job("math.add", {"a": 2, "b": 3})
    with pytest.raises(TypeError, match="missing a required argument: 'b'"):
        await service.create_job("math.add", {"a": 2})
    with anyio.fail_after(WAIT):
        await app.worker().run(burst=True)
    assert (await app.result(job.id, timeout=WAIT)).value == 5


async def test_scheduled_at_must_be_aware_and_is_honoured() -> None:
    app = make_app()
    service = JobService(app)
    when = datetime.now(UTC) + timedelta(hours=2)
    job = await service.create_job("report.generate", {"month": "m"}, scheduled_at=when)
    assert job.status is JobStatus.SCHEDULED
    assert job.scheduled_at == when
    with pytest.raises(ValueError, match="aware datetime"):
        await service.create_job(
            "report.generate",
            {"month": "m"},
            scheduled_at=datetime.now() + timedelta(hours=1),  # naive on purpose
        )


@pytest.mark.parametrize(
    ("job_type", "payload", "metadata", "error", "match"),
    [
        ("nope", {}, None, UnknownTaskError, "unknown task 'nope'"),
        ("report.generate", {"month": object()}, None, SerializationError, "'month'"),
        ("report.generate", {1: "x"}, None, SerializationError, "keys must be strings"),
        ("report.generate", ["month"], None, TypeError, "must be a mapping"),
        ("report.generate", {"m": 1}, {"when": object()}, SerializationError, "cannot encode"),
    ],
)
async def test_refused_jobs_enqueue_nothing(
    job_type: str, payload: Any, metadata: Any, error: type[Exception], match: str
) -> None:
    app = make_app()
    service = JobService(app)
    with pytest.raises(error, match=match):
        await service.create_job(job_type, payload, metadata=metadata)
    if error is not TypeError:
        assert issubclass(error, ValueError)  # what the reference systems' callers catch
    assert await app.stats() == {}


async def test_cancel_and_stats() -> None:
    app = make_app(max_retries=0)
    service = JobService(app)

    class Broken(JobHandler):
        job_type = "broken"

        async def handle(self, job: Job) -> JobResult:
            if job.kwargs.get("expected"):
                return JobResult(success=False, error="expected")
            raise RuntimeError("unexpected")

    app.register(Broken())
    keep = await service.create_job("report.generate", {"month": "a"})
    gone = await service.create_job("report.generate", {"month": "b"})
    expected = await service.create_job("broken", {"expected": True})
    unexpected = await service.create_job("broken", {})
    await service.create_job("report.generate", {"month": "c"}, scheduled_at=_in(3600))
    assert await service.cancel_job(gone.id)
    assert not await service.cancel_job("no-such-job")
    assert await service.get_job_stats() == JobStats(queued=4)
    with anyio.fail_after(WAIT):
        await _drain_ready(app, [keep, expected, unexpected])
    assert not await service.cancel_job(keep.id)  # finished
    assert await service.get_job_stats() == JobStats(queued=1, completed=1, failed=2)
    assert await service.get_job_stats(["elsewhere"]) == JobStats()
    cancelled = await service.get_job(gone.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED


def _in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def _drain_ready(app: App, jobs: list[Job]) -> None:
    """Run the jobs that are ready now (a scheduled one stays scheduled)."""
    async with app.worker(concurrency=2):
        for job in jobs:
            await app.result(job.id)


def test_create_job_sync_from_code_without_a_loop() -> None:
    app = make_app()
    try:
        job = JobService(app).create_job_sync("report.generate", {"month": "m"}, priority=2)
        assert job.priority == 2
        later = JobService(app).create_job_sync(
            "report.generate", {"month": "m"}, scheduled_at=_in(60)
        )
        assert later.status is JobStatus.SCHEDULED
    finally:
        app.close_sync()


# -- the worker manager -----------------------------------------------------------------------


async def test_the_manager_runs_n_workers_and_stop_waits_for_in_flight_jobs() -> None:
    app = make_app()
    started = anyio.Event()
    finish = anyio.Event()
    finished: list[str] = []

    @app.task(name="slow", queue="high")
    async def slow(name: str) -> None:
        started.set()
        await finish.wait()
        finished.append(name)

    manager = WorkerManager(app, workers=3, queues=["high", "default"], concurrency=1)
    assert [w.queues for w in manager.workers] == [["high", "default"]] * 3
    assert len({w.name for w in manager.workers}) == 3

    async def release_later() -> None:
        await anyio.sleep(0.05)
        finish.set()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            await manager.start()
            assert manager.running
            job = await slow.enqueue("in flight")
            await started.wait()
            tg.start_soon(release_later)
            await manager.stop()  # returns only after the running job finished
            assert finished == ["in flight"]
    assert not manager.running
    assert manager.stats.completed == 1
    assert (await app.get_job(job.id)).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    await manager.stop()  # a second stop is a no-op


async def test_several_workers_run_jobs_at_the_same_time() -> None:
    app = make_app()
    arrived = 0
    all_in = anyio.Event()

    @app.task(name="meet")
    async def meet() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 3:
            all_in.set()
        await all_in.wait()  # only finishes if three run at once

    with anyio.fail_after(WAIT):
        async with WorkerManager(app, workers=3, concurrency=1):
            jobs = [await meet.enqueue() for _ in range(3)]
            for job in jobs:
                assert (await app.result(job.id)).success


async def test_an_error_in_the_application_stops_the_workers_and_comes_out_unwrapped() -> None:
    app = make_app()
    manager = WorkerManager(app, workers=2)
    with anyio.fail_after(WAIT), pytest.raises(KeyError, match="boom"):
        async with manager:
            raise KeyError("boom")
    assert not manager.running


async def test_manager_options_are_checked() -> None:
    app = make_app()
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        WorkerManager(app, workers=0)
    with pytest.raises(ValueError, match="concurrency"):
        WorkerManager(app, concurrency=0)
    manager = WorkerManager(app)
    with anyio.fail_after(WAIT):
        async with manager:
            with pytest.raises(RuntimeError, match="already running"):
                await manager.start()


# -- the registry ----------------------------------------------------------------------------


def test_the_registry_lists_its_tasks_and_names_unknown_ones() -> None:
    app = make_app()
    assert sorted(app.tasks) == ["math.add", "report.generate"]
    assert app.get_task("math.add").name == "math.add"
    with pytest.raises(UnknownTaskError, match="unknown task 'nope'") as caught:
        app.get_task("nope")
    assert caught.value.name == "nope"
    assert isinstance(caught.value, ValueError)


async def test_enqueue_by_an_unknown_name_raises_and_a_worker_dead_letters_one() -> None:
    app = make_app()
    with pytest.raises(UnknownTaskError):
        await app.enqueue("nope")
    job = await app.remote("nope").enqueue()  # a producer may not know; the worker says so
    with anyio.fail_after(WAIT):
        await app.worker().run(burst=True)
    dead = await app.get_job(job.id)
    assert dead is not None
    assert (dead.status, dead.error_type) == (JobStatus.DEAD_LETTER, "UnknownTaskError")


async def test_the_default_job_timeout_raises_a_named_timeout_error() -> None:
    app = make_app(job_timeout=0.05, max_retries=1)
    errors: list[BaseException] = []

    async def record(job: Job, error: BaseException) -> None:
        errors.append(error)

    @app.task(name="hang", on_failure=record)
    async def hang() -> None:
        await anyio.sleep(WAIT)

    @app.task(name="patient", timeout=WAIT)  # a task's own timeout wins over the default
    async def patient() -> str:
        await anyio.sleep(0.1)
        return "done"

    hung, waited = await hang.enqueue(), await patient.enqueue()
    assert (hang.opts.timeout, patient.opts.timeout) == (0.05, WAIT)
    with anyio.fail_after(WAIT):
        await app.worker().run(burst=True)
    assert [type(e) for e in errors] == [JobTimeoutError, JobTimeoutError]
    assert isinstance(errors[0], TimeoutError)
    dead = await app.get_job(hung.id)
    assert dead is not None
    assert (dead.status, dead.attempts, dead.error_type) == (
        JobStatus.DEAD_LETTER,
        2,
        "JobTimeoutError",
    )
    assert (await app.result(waited.id, timeout=WAIT)).value == "done"
