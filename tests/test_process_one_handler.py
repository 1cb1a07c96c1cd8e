"""``process_one(queue, handler)``: a caller's function of the ``Job`` runs it instead of its
registered task, whatever its task name (registered here or not), with the same lease keeping,
timeout, settle and events as the normal path, and the job's retry policy. On the memory broker
and the real Redis."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import redis

from taskit import App, Fail, Job, JobResult, JobService, JobStatus, MemoryBroker, Settings
from taskit.broker.redis import RedisBroker
from taskit.events import EventKind
from taskit.oneshot import process_one

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only


@pytest.fixture(params=["memory", "redis"])
async def app(request: pytest.FixtureRequest) -> AsyncIterator[App]:
    settings = Settings(backoff=0.0, visibility_timeout=30.0)
    if request.param == "memory":
        yield App(MemoryBroker(), settings=settings)
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"i13-handler-{uuid.uuid4().hex[:10]}"
    the_app = App(RedisBroker(url, prefix=prefix), settings=settings)
    try:
        yield the_app
    finally:
        await the_app.close()
        client = redis.Redis.from_url(url)
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()


async def stored(app: App, job_id: str) -> Job:
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def test_a_handler_runs_a_job_of_a_task_not_registered_here(app: App) -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    events: list[EventKind] = []
    app.on()(lambda event: events.append(event.kind))

    async def my_handler(job: Job) -> dict[str, object]:
        seen.append((job.task, job.kwargs))
        return {"rows": 3}

    job = await app.remote("report.build").enqueue(day="mon")

    result = await JobService(app).process_one("default", my_handler)

    assert result is not None
    assert (result.success, result.value) == (True, {"rows": 3})
    assert result.duration is not None
    assert seen == [("report.build", {"day": "mon"})]
    done = await stored(app, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result is not None
    assert done.result.value == {"rows": 3}
    assert events == [EventKind.CREATED, EventKind.STARTED, EventKind.COMPLETED]
    assert await JobService(app).process_one("default", my_handler) is None  # none left


async def test_a_failing_handler_is_retried_then_dead_lettered(app: App) -> None:
    failures: list[str] = []
    app.on(EventKind.RETRIED, EventKind.DEAD_LETTERED)(
        lambda event: failures.append(f"{event.kind.value} {event.error}")
    )

    def broken(job: Job) -> None:  # a sync handler: it runs in a thread
        assert threading.current_thread() is not threading.main_thread()
        raise OSError(f"down for {job.kwargs['to']}")

    job = await app.remote("email.send", max_retries=1).enqueue(to="ada")

    first = await process_one(app, "default", broken)
    second = await process_one(app, "default", broken, timeout=5.0)

    assert first is not None
    assert second is not None
    assert (first.success, first.error_type, first.error) == (False, "OSError", "down for ada")
    assert (second.success, second.error_type) == (False, "OSError")
    dead = await stored(app, job.id)
    assert (dead.status, dead.attempts) == (JobStatus.DEAD_LETTER, 2)
    assert failures == ["retried down for ada", "dead_lettered down for ada"]


async def test_fail_and_an_unsuccessful_job_result_fail_the_job_at_once(app: App) -> None:
    async def refuse(job: Job) -> JobResult:
        if job.kwargs["how"] == "raise":
            raise Fail("not for us")
        return JobResult(success=False, error="declined", error_type="Declined")

    raised = await app.remote("x").enqueue(how="raise")
    returned = await app.remote("x").enqueue(how="return")

    assert (await process_one(app, None, refuse)) is not None
    result = await process_one(app, None, refuse)

    assert result is not None
    assert (result.success, result.error, result.error_type) == (False, "declined", "Declined")
    for job in (raised, returned):
        assert (await stored(app, job.id)).status is JobStatus.FAILED  # no retry


async def test_a_registered_task_keeps_its_policy_with_the_callers_handler(app: App) -> None:
    calls: list[str] = []

    @app.task(name="charge", dont_retry_on=KeyError, timeout=0.2)
    async def charge(card: str) -> str:
        calls.append("task")  # never: the caller's handler runs instead
        return card

    async def slow_or_missing(job: Job) -> None:
        if job.kwargs["card"] == "slow":
            await anyio.sleep(5)
        raise KeyError(job.kwargs["card"])

    missing = await charge.enqueue(card="missing")
    slow = await charge.enqueue(card="slow")

    await process_one(app, None, slow_or_missing)
    timed_out = await process_one(app, None, slow_or_missing)

    assert calls == []
    assert (await stored(app, missing.id)).status is JobStatus.FAILED  # dont_retry_on: at once
    assert timed_out is not None
    assert timed_out.error_type == "JobTimeoutError"  # the task's timeout applies
    # retried (backoff 0: due again at once; memory makes it PENDING, Redis RETRYING)
    assert (await stored(app, slow.id)).status in (JobStatus.RETRYING, JobStatus.PENDING)


async def test_the_lease_is_kept_while_a_handler_outlasts_it() -> None:
    app = App(MemoryBroker(), settings=Settings(visibility_timeout=0.3))

    async def slow(job: Job) -> str:
        await anyio.sleep(0.5)
        return "done"

    job = await app.remote("slow").enqueue()

    result = await process_one(app, None, slow)

    assert result is not None
    assert (result.success, result.value) == (True, "done")
    assert (await stored(app, job.id)).status is JobStatus.COMPLETED


async def test_a_handler_that_is_not_callable_is_refused_before_anything_is_taken() -> None:
    app = App(MemoryBroker(), settings=Settings())
    job = await app.remote("x").enqueue()

    with pytest.raises(TypeError, match="handler must be a callable"):
        await process_one(app, None, "not a function")  # type: ignore[arg-type]

    assert (await stored(app, job.id)).status is JobStatus.PENDING
