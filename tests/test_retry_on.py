"""Choosing what to retry: ``retry_on`` / ``dont_retry_on``, end to end through the worker on
memory, real Redis and fakeredis.

An exception the task does not retry fails its job at once (FAILED, as Celery's
``autoretry_for`` leaves a task in FAILURE), its error and traceback kept and ``on_failure``
called once; subclasses match as in ``except``; ``dont_retry_on`` wins; an explicit ``Retry`` is
always honoured; a timeout is matched as ``JobTimeoutError``; and a job whose worker died (the
reaper's path) is retried whatever the filters say, since its handler raised nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from taskit import App, Job, JobStatus, JobTimeoutError, MemoryBroker, Retry, Settings
from taskit.execution import retries
from taskit.handlers import JobHandler
from taskit.job import JobResult
from taskit.options import resolve_options
from taskit.testing import Harness
from tests.broker._redis_kinds import open_redis_harness

pytestmark = pytest.mark.anyio

WAIT = 10.0  # a hang fails the test instead of stalling the run
KINDS = ["memory", "fast-real", "redispy-fakeredis"]
SHORT_LEASE = 0.3  # a visibility timeout that really passes during the reaper test


class Declined(Exception):
    """A permanent business error: retrying cannot help."""


class CardDeclined(Declined):
    """A subclass: matched by a filter naming ``Declined``."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only; the memory kind runs here alike


@asynccontextmanager
async def app_on(
    kind: str, request: pytest.FixtureRequest, *, lease: float = 2.0, reaper: float = 0.2
) -> AsyncIterator[App]:
    settings = Settings(backoff=0.0, visibility_timeout=lease, reaper_interval=reaper)
    if kind == "memory":
        yield App(MemoryBroker(), settings=settings)
        return
    async with open_redis_harness(kind, request) as harness:
        yield App(harness.broker, settings=settings)


async def finished(app: App, job_id: str) -> Job:
    """The job once its worker finished it (a burst run)."""
    with anyio.fail_after(WAIT):
        await app.worker(concurrency=2).run(burst=True)
    job = await app.get_job(job_id)
    assert job is not None
    return job


# -- the decision ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("retry_on", "dont_retry_on", "error", "expected"),
    [
        (None, None, ValueError(), True),
        ((OSError,), None, ConnectionError(), True),  # a subclass
        (OSError, None, ConnectionError(), True),  # one class, as ``except`` takes
        ((OSError,), None, ValueError(), False),
        ((), None, ValueError(), False),  # retry nothing
        (None, (Declined,), CardDeclined(), False),
        ((Exception,), (Declined,), Declined(), False),  # dont_retry_on wins
        ((Exception,), (Declined,), KeyError(), True),
        ((ConnectionError,), None, JobTimeoutError("late"), False),
        ((TimeoutError,), None, JobTimeoutError("late"), True),
    ],
)
def test_the_filters_decide_which_exceptions_are_retried(
    retry_on: Any, dont_retry_on: Any, error: BaseException, expected: bool
) -> None:
    opts = resolve_options(Settings(), "t", retry_on=retry_on, dont_retry_on=dont_retry_on)
    assert retries(opts, error) is expected


def test_unset_filters_stay_none() -> None:
    opts = resolve_options(Settings(), "t")
    assert (opts.retry_on, opts.dont_retry_on) == (None, None)


# -- through the worker, on every broker -------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
async def test_an_exception_not_in_retry_on_fails_at_once_with_its_traceback(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, request) as app:
        hooked: list[tuple[str, str]] = []

        def hook(job: Job, error: BaseException) -> None:
            hooked.append((job.id, type(error).__name__))

        @app.task(max_retries=5, retry_on=(ConnectionError,), on_failure=hook)
        async def charge(kind: str) -> None:
            if kind == "declined":
                raise CardDeclined("card declined")
            raise ConnectionResetError("gateway hung up")

        failing = await charge.enqueue("declined")
        flaky = await charge.enqueue("network")
        job = await finished(app, failing.id)
        dead = await app.get_job(flaky.id)

        assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
        assert (job.error, job.error_type) == ("card declined", "CardDeclined")
        assert job.traceback is not None
        assert "in charge" in job.traceback
        assert "CardDeclined: card declined" in job.traceback
        assert job.result is not None
        assert job.result.success is False
        # The retried one (a subclass of ConnectionError) ran 1 + max_retries times.
        assert dead is not None
        assert [j.id for j in await app.broker.dead_letters(job.queue)] == [flaky.id]
        assert (dead.status, dead.attempts, dead.error_type) == (
            JobStatus.DEAD_LETTER, 6, "ConnectionResetError",
        )  # fmt: skip
        assert hooked.count((failing.id, "CardDeclined")) == 1
        assert hooked.count((flaky.id, "ConnectionResetError")) == 6


@pytest.mark.parametrize("kind", KINDS)
async def test_dont_retry_on_wins_and_covers_subclasses(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, request) as app:
        runs = 0

        @app.task(max_retries=3, retry_on=(Exception,), dont_retry_on=(Declined,))
        async def pay() -> None:
            nonlocal runs
            runs += 1
            raise CardDeclined("no funds")

        job = await finished(app, (await pay.enqueue()).id)

        assert (job.status, job.attempts, runs) == (JobStatus.FAILED, 1, 1)
        assert job.error_type == "CardDeclined"
        assert await app.broker.dead_letters(job.queue) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_an_explicit_retry_is_honoured_whatever_the_filters(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, request) as app:
        runs = 0

        @app.task(max_retries=3, retry_on=(), dont_retry_on=(Exception,))
        async def poll() -> str:
            nonlocal runs
            runs += 1
            if runs < 3:
                raise Retry(delay=0)
            return "ready"

        job = await finished(app, (await poll.enqueue()).id)

        assert (job.status, job.attempts, runs) == (JobStatus.COMPLETED, 3, 3)
        assert job.result is not None
        assert job.result.value == "ready"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_timeout_is_matched_as_job_timeout_error(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, request) as app:

        @app.task(max_retries=3, timeout=0.05, retry_on=(ConnectionError,))
        async def slow() -> None:
            await anyio.sleep(5)

        job = await finished(app, (await slow.enqueue()).id)

        assert (job.status, job.attempts, job.error_type) == (
            JobStatus.FAILED, 1, "JobTimeoutError",
        )  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
async def test_a_job_whose_worker_died_is_retried_whatever_the_filters(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """The reaper's path: the handler raised nothing, so no filter applies; the job is retried
    (at least once delivery) and completes."""
    async with app_on(kind, request, lease=SHORT_LEASE, reaper=0.05) as app:

        @app.task(max_retries=2, retry_on=(), dont_retry_on=(BaseException,))
        async def work() -> str:
            return "done"

        job = await work.enqueue()
        # A worker reserves the job and dies: its lease is never extended or settled.
        [lost] = await app.broker.reserve(["default"], count=1, lease=SHORT_LEASE, timeout=0)
        assert lost.job.attempts == 1
        async with app.worker(concurrency=1):
            result = await app.result(job.id, timeout=WAIT)

        assert result.value == "done"
        done = await app.get_job(job.id)
        assert done is not None
        assert (done.status, done.attempts, done.error_type) == (
            JobStatus.COMPLETED, 2, "TimeoutError",
        )  # fmt: skip


# -- the other spellings -----------------------------------------------------------------------
class Charge(JobHandler):
    job_type = "charge"

    def __init__(self) -> None:
        self.failures: list[str] = []

    async def handle(self, job: Job) -> JobResult:
        raise Declined(str(job.kwargs["card"]))

    async def on_failure(self, job: Job, error: BaseException) -> None:
        self.failures.append(type(error).__name__)


async def test_a_class_handler_takes_the_filters_and_a_harness_drain_applies_them() -> None:
    app = App(MemoryBroker(), settings=Settings(backoff=0.0))
    handler = Charge()
    task = app.register(handler, max_retries=4, dont_retry_on=(Declined,))
    assert task.opts.dont_retry_on == (Declined,)
    with Harness(app) as harness:
        job = await task.enqueue(card="4242")
        await harness.drain()
        stored = await app.get_job(job.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.error) == (JobStatus.FAILED, 1, "4242")
    assert handler.failures == ["Declined"]


def test_remote_checks_and_keeps_the_filters() -> None:
    app = App(MemoryBroker(), settings=Settings())
    remote = app.remote("elsewhere", retry_on=(ConnectionError,), dont_retry_on=KeyError)
    assert (remote.opts.retry_on, remote.opts.dont_retry_on) == ((ConnectionError,), KeyError)
    with pytest.raises(TypeError, match="retry_on must be an exception class"):
        app.remote("elsewhere", retry_on=["ConnectionError"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dont_retry_on cannot name Retry"):
        app.task(dont_retry_on=(Retry,))(lambda: None)
    app.close_sync()
