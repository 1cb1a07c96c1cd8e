"""taskit.testing: the harness swaps the broker, drain() runs everything (through backoff and
schedules, on a fake clock), eager mode runs jobs at enqueue, and the pytest fixture cleans up."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from taskit import (
    App,
    Job,
    JobResult,
    JobStatus,
    MemoryBroker,
    Retry,
    Settings,
    WorkflowFailed,
    chain,
    chord,
    group,
)
from taskit.handlers import JobHandler
from taskit.testing import DrainError, FakeClock, Harness, eager

pytestmark = pytest.mark.anyio

HOUR = 3600.0
BASE = 600.0  # exponential backoff base (the default cap is an hour)


def make_app(**settings: Any) -> App:
    return App(MemoryBroker(), settings=Settings(**settings))


async def test_the_harness_swaps_the_broker_and_puts_it_back() -> None:
    app = make_app()
    original = app.broker
    with Harness(app) as harness:
        assert app.broker is harness.broker
        assert "testing" in app.broker_url
    assert app.broker is original
    async with Harness(app) as harness:
        assert app.broker is harness.broker
    assert app.broker is original


async def test_drain_runs_retries_with_long_backoff_without_waiting() -> None:
    app = make_app(backoff=BASE, max_retries=3)
    runs: list[float] = []

    @app.task(name="flaky")
    async def flaky() -> str:
        runs.append(harness.clock.time())
        if len(runs) < 3:
            raise ConnectionError("try later")
        return "ok"

    with Harness(app) as harness:
        start = harness.clock.time()
        job = await flaky.enqueue()
        with anyio.fail_after(5):
            stats = await harness.drain()
        assert (stats.completed, stats.retried) == (1, 2)
        done = await app.get_job(job.id)
        assert done is not None
        assert (done.status, done.attempts) == (JobStatus.COMPLETED, 3)
        gaps = [b - a for a, b in itertools.pairwise(runs)]
        assert runs[0] == start
        assert BASE / 2 <= gaps[0] <= BASE  # equal jitter: at least half the nominal delay
        assert BASE <= gaps[1] <= 2 * BASE


async def test_drain_runs_scheduled_jobs_in_due_order_and_dead_letters() -> None:
    app = make_app(backoff=0.0, max_retries=1)
    order: list[str] = []

    @app.task(name="note")
    async def note(text: str) -> None:
        order.append(text)

    @app.task(name="doomed")
    async def doomed() -> None:
        raise RuntimeError("always")

    with Harness(app) as harness:
        start = harness.clock.time()
        await note.schedule(timedelta(days=7), "next week")
        await note.schedule(datetime.fromtimestamp(start, UTC) + timedelta(hours=1), "in an hour")
        await note.enqueue("now")
        dead = await doomed.enqueue()
        stats = await harness.drain()
        assert order == ["now", "in an hour", "next week"]
        assert harness.clock.time() == pytest.approx(start + 7 * 86400)
        assert stats.dead_lettered == 1
        assert [j.id for j in await harness.jobs(status=JobStatus.DEAD_LETTER)] == [dead.id]
        assert len(await harness.jobs(task="note")) == 3


async def test_jobs_enqueued_by_jobs_run_in_the_same_drain() -> None:
    app = make_app()
    seen: list[int] = []

    @app.task(name="countdown")
    async def countdown(n: int) -> None:
        seen.append(n)
        if n:
            await countdown.schedule(60, n - 1)

    with Harness(app) as harness:
        await countdown.enqueue(3)
        stats = await harness.drain()
    assert seen == [3, 2, 1, 0]
    assert stats.completed == 4


async def test_drain_gives_up_on_a_job_that_enqueues_itself_forever() -> None:
    app = make_app()

    @app.task(name="forever")
    async def forever() -> None:
        await forever.enqueue()

    with Harness(app) as harness:
        await forever.enqueue()
        with pytest.raises(DrainError, match="ran 5 jobs"):
            await harness.drain(max_jobs=5)
        left = await app.stats()
        assert (left["default"].queued, left["default"].running) == (1, 0)


async def test_drain_only_the_queues_asked_for() -> None:
    app = make_app()

    @app.task(name="a", queue="a")
    async def a() -> None: ...

    @app.task(name="b", queue="b")
    async def b() -> None: ...

    with Harness(app) as harness:
        await a.enqueue()
        await b.schedule(HOUR)
        stats = await harness.drain(["a"])
        assert stats.completed == 1
        assert (await app.stats(["b"]))["b"].queued == 1  # its time came, but b was not drained


async def test_eager_mode_returns_each_job_finished() -> None:
    app = make_app(backoff=5.0, max_retries=2)
    calls: list[int] = []

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="charge")
    async def charge(order: str) -> str:
        calls.append(1)
        if len(calls) < 2:
            raise Retry(delay=30)
        return f"{order} charged"

    with eager(app):
        job = await add.enqueue(2, 3)
        assert job.status is JobStatus.COMPLETED
        assert job.result == JobResult(success=True, value=5, duration=job.result.duration)
        retried = await charge.enqueue("o-1")
        assert (retried.status, retried.attempts) == (JobStatus.COMPLETED, 2)
        later = await add.schedule(timedelta(days=1), 1, 1)
        assert later.status is JobStatus.COMPLETED


async def test_eager_mode_runs_class_handlers_and_follow_up_jobs() -> None:
    app = make_app()
    log: list[str] = []

    class Signup(JobHandler):
        job_type = "signup"

        async def handle(self, job: Job) -> JobResult:
            log.append(f"signup {job.kwargs['email']}")
            follow = await welcome.enqueue(job.kwargs["email"])
            assert follow.status is JobStatus.PENDING  # run after this job, by the same drain
            return JobResult(success=True)

    @app.task(name="welcome")
    async def welcome(email: str) -> None:
        log.append(f"welcome {email}")

    signup = app.register(Signup())
    with eager(app):
        job = await signup.enqueue(email="ada@example.com")
    assert job.status is JobStatus.COMPLETED
    assert log == ["signup ada@example.com", "welcome ada@example.com"]


def test_sync_code_uses_enqueue_sync_and_drain_sync() -> None:
    app = make_app()

    @app.task(name="shout")
    def shout(text: str) -> str:
        return text.upper()

    try:
        with Harness(app) as harness:
            job = shout.enqueue_sync("hi")
            assert harness.drain_sync().completed == 1
            done = app.run_sync(app.get_job, job.id)
            assert done is not None
            assert done.result is not None
            assert done.result.value == "HI"
        with eager(app):
            assert shout.enqueue_sync("eager").status is JobStatus.COMPLETED
    finally:
        app.close_sync()


async def test_a_given_clock_and_advance() -> None:
    app = make_app()
    clock = FakeClock(1_000.0)

    @app.task(name="noop")
    async def noop() -> None: ...

    with Harness(app, clock=clock) as harness:
        await noop.schedule(10)
        assert harness.advance(10) == 1_010.0
        assert (await app.stats())["default"].queued == 1  # due now, not run: advance runs nothing


async def test_the_pytest_fixture_opens_and_closes_harnesses(
    taskit_harness: Callable[..., Harness],
) -> None:
    app = make_app()

    @app.task(name="double")
    async def double(n: int) -> int:
        return 2 * n

    harness = taskit_harness(app, eager=True)
    assert app.broker is harness.broker
    job = await double.enqueue(4)
    assert job.result is not None
    assert job.result.value == 8


def test_entering_twice_is_refused() -> None:
    harness = Harness(make_app())
    with harness, pytest.raises(RuntimeError, match="already in use"):
        harness.__enter__()


async def test_drain_and_eager_mode_run_workflows() -> None:
    app = make_app()

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="total", max_retries=2)
    async def total(values: list[int]) -> int:
        if len(values) < 3:
            raise Retry(delay=HOUR)  # retried hours later on the fake clock, then dead
        return sum(values)

    with Harness(app) as harness:
        wf = await chord(group(*(add.s(i, i) for i in range(3))), total.step()).enqueue()
        assert (await wf.state()).nodes[-1].status is JobStatus.DEFERRED
        stats = await harness.drain()
        assert stats.completed == 4
        assert await wf.result(timeout=0) == 6
    with Harness(app, eager=True):
        eager_wf = await chain(add.s(1, 2), add.step(10)).enqueue()
        assert await eager_wf.result(timeout=0) == 13  # the enqueue ran every node
        short = await chord(group(add.s(1, 1)), total.step()).enqueue()
        with pytest.raises(WorkflowFailed, match="'total'"):
            await short.result(timeout=0)
