"""Class handlers: registration, dependencies, payloads, and the same retry / dead-letter / result
semantics as decorated functions (checked side by side)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from taskit import (
    App,
    DuplicateTaskError,
    Fail,
    Job,
    JobResult,
    JobStatus,
    MemoryBroker,
    Settings,
    WorkerStats,
)
from taskit.handlers import HandlerTask, JobHandler

pytestmark = pytest.mark.anyio

WAIT = 10.0


def make_app(**settings: Any) -> App:
    settings.setdefault("backoff", 0.0)
    return App(MemoryBroker(), settings=Settings(**settings))


async def burst(app: App) -> WorkerStats:
    with anyio.fail_after(WAIT):
        return await app.worker(concurrency=2).run(burst=True)


async def final(app: App, job_id: str) -> Job:
    job = await app.get_job(job_id)
    assert job is not None
    return job


class Mailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, subject: str) -> None:
        self.sent.append((to, subject))


class SendEmail(JobHandler):
    job_type = "email.send"

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    async def handle(self, job: Job) -> JobResult:
        payload = job.kwargs
        await self.mailer.send(payload["to"], payload["subject"])
        return JobResult(success=True, value={"to": payload["to"], "attempt": job.attempts})


async def test_a_handler_gets_its_dependencies_and_the_job() -> None:
    app = make_app()
    mailer = Mailer()
    task = app.register(SendEmail(mailer))
    assert isinstance(task, HandlerTask)
    assert app.tasks["email.send"] is task
    job = await task.enqueue(to="ada@example.com", subject="Hi")
    assert job.kwargs == {"to": "ada@example.com", "subject": "Hi"}
    stats = await burst(app)
    assert stats.completed == 1
    assert mailer.sent == [("ada@example.com", "Hi")]
    done = await final(app, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result is not None
    assert done.result.value == {"to": "ada@example.com", "attempt": 1}


async def test_returning_none_is_success_and_a_value_is_wrapped() -> None:
    class Quiet(JobHandler):
        job_type = "quiet"

        async def handle(self, job: Job) -> JobResult:
            return None  # type: ignore[return-value]

    class Plain(JobHandler):
        job_type = "plain"

        async def handle(self, job: Job) -> JobResult:
            return job.kwargs["n"] * 2  # type: ignore[no-any-return]

    app = make_app()
    quiet = await app.register(Quiet()).enqueue()
    plain = await app.register(Plain()).enqueue(n=21)
    await burst(app)
    assert (await final(app, quiet.id)).status is JobStatus.COMPLETED
    done = await final(app, plain.id)
    assert done.result is not None
    assert done.result.value == 42


# -- the same semantics as a decorated function ----------------------------------------------


class Behaviour(JobHandler):
    """Does what the payload's ``mode`` says; records ``on_failure`` calls."""

    def __init__(self, job_type: str, failures: list[str]) -> None:
        self.job_type = job_type
        self.failures = failures

    async def handle(self, job: Job) -> JobResult:
        return await behave(job.kwargs["mode"])

    async def on_failure(self, job: Job, error: BaseException) -> None:
        self.failures.append(type(error).__name__)


async def behave(mode: str) -> JobResult:
    if mode == "ok":
        return JobResult(success=True, value="done")
    if mode == "fail_result":
        return JobResult(success=False, error="card declined", error_type="Declined")
    if mode == "fail":
        raise Fail("not retried")
    if mode == "sleep":
        await anyio.sleep(5)
    raise ConnectionError("flaky")


@pytest.mark.parametrize(
    ("mode", "status", "attempts", "failures"),
    [
        ("ok", JobStatus.COMPLETED, 1, []),
        ("fail_result", JobStatus.FAILED, 1, []),
        ("fail", JobStatus.FAILED, 1, ["Fail"]),
        ("raise", JobStatus.DEAD_LETTER, 3, ["ConnectionError"] * 3),
        ("sleep", JobStatus.DEAD_LETTER, 3, ["JobTimeoutError"] * 3),
    ],
)
async def test_a_handler_and_a_function_end_alike(
    mode: str, status: JobStatus, attempts: int, failures: list[str]
) -> None:
    app = make_app(max_retries=2, job_timeout=0.05)
    fn_failures: list[str] = []

    async def record(job: Job, error: BaseException) -> None:
        fn_failures.append(type(error).__name__)

    @app.task(name="as.function", on_failure=record)
    async def as_function(mode: str) -> JobResult:
        return await behave(mode)

    handler_failures: list[str] = []
    handler = app.register(Behaviour("as.handler", handler_failures))
    by_function = await as_function.enqueue(mode)
    by_handler = await handler.enqueue(mode=mode)
    await burst(app)
    ends = [await final(app, by_function.id), await final(app, by_handler.id)]
    for job in ends:
        assert (job.status, job.attempts) == (status, attempts)
    assert fn_failures == handler_failures == failures
    results = [_essentials(job.result) for job in ends]
    assert results[0] == results[1]
    assert ends[0].error_type == ends[1].error_type


def _essentials(result: JobResult | None) -> tuple[Any, ...] | None:
    if result is None:
        return None
    return (result.success, result.value, result.error, result.error_type)


async def test_an_exception_in_on_failure_is_logged_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(JobHandler):
        job_type = "broken"

        async def handle(self, job: Job) -> JobResult:
            raise RuntimeError("boom")

        async def on_failure(self, job: Job, error: BaseException) -> None:
            raise ValueError("the alerting service is down")

    app = make_app(max_retries=1)
    job = await app.register(Broken()).enqueue()
    with caplog.at_level(logging.ERROR, logger="taskit.execution"):
        stats = await burst(app)
    assert (stats.retried, stats.dead_lettered) == (1, 1)
    assert (await final(app, job.id)).status is JobStatus.DEAD_LETTER
    assert "on_failure hook of task broken raised" in caplog.text


async def test_options_given_at_registration_apply() -> None:
    app = make_app()
    task = app.register(SendEmail(Mailer()), queue="emails", max_retries=7, priority=3, timeout=9)
    job = await task.enqueue(to="a@b.c", subject="s")
    assert (job.queue, job.max_retries, job.priority, job.timeout) == ("emails", 7, 3, 9)
    assert (await app.stats(["emails"]))["emails"].queued == 1


# -- what is refused, with nothing enqueued -----------------------------------------------


class Strict(JobHandler):
    job_type = "strict"

    async def handle(self, job: Job) -> JobResult:
        return JobResult(success=True)

    def validate_payload(self, payload: Mapping[str, Any]) -> None:
        if not isinstance(payload.get("user_id"), int):
            raise ValueError("user_id must be an int")


async def test_positional_arguments_and_invalid_payloads_are_refused() -> None:
    app = make_app()
    task = app.register(Strict())
    with pytest.raises(TypeError, match="keyword arguments only"):
        await task.enqueue(1)
    with pytest.raises(ValueError, match="user_id must be an int"):
        await task.enqueue(user_id="7")
    with pytest.raises(ValueError, match="cannot be serialized"):
        await task.enqueue(user_id=1, blob=object())
    assert await app.stats() == {}
    await task.enqueue(user_id=7)
    assert (await app.stats())["default"].queued == 1


def test_registration_errors() -> None:
    app = make_app()

    class NoType(JobHandler):
        async def handle(self, job: Job) -> JobResult:
            return JobResult(success=True)

    with pytest.raises(TypeError, match="JobHandler instance"):
        app.register(SendEmail)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"NoType\.job_type must be a non-empty string"):
        app.register(NoType())
    app.register(SendEmail(Mailer()))
    with pytest.raises(DuplicateTaskError):
        app.register(SendEmail(Mailer()))
    with pytest.raises(ValueError, match="max_retries"):
        app.register(Strict(), max_retries=-1)


async def test_a_job_with_positional_arguments_fails_without_retry() -> None:
    """A producer that does not know the handler (app.remote) can still send positional
    arguments; the worker fails such a job at once rather than retrying it."""
    app = make_app()
    app.register(Strict())
    producer = App(app.broker, settings=app.settings)  # knows no handler, checks nothing
    job = await producer.remote("strict").enqueue(7)
    await burst(app)
    done = await final(app, job.id)
    assert (done.status, done.attempts) == (JobStatus.FAILED, 1)
    assert done.error is not None
    assert "no positional arguments" in done.error


async def test_a_remote_handle_with_other_options_keeps_the_payload_rules() -> None:
    app = make_app()
    mailer = Mailer()
    app.register(SendEmail(mailer))
    urgent = app.remote("email.send", queue="urgent", priority=9)
    assert isinstance(urgent, HandlerTask)
    with pytest.raises(TypeError, match="keyword arguments only"):
        await urgent.enqueue("ada@example.com")
    job = await urgent.enqueue(to="ada@example.com", subject="Hi")
    assert (job.queue, job.priority) == ("urgent", 9)
    with anyio.fail_after(WAIT):
        await app.worker(queues=["urgent"]).run(burst=True)
    assert mailer.sent == [("ada@example.com", "Hi")]
