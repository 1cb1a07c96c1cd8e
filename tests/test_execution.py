"""Running jobs: argument conversion, results, Fail/Retry, retries and backoff, on_failure,
timeouts, and what is kept on a failed job."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import msgspec
import pytest

from taskit import (
    App,
    Exponential,
    Fail,
    Job,
    JobResult,
    JobStatus,
    JobTimeoutError,
    MemoryBroker,
    Retry,
    Settings,
    WorkerStats,
)
from taskit.backoff import BackoffPolicy
from taskit.clock import FakeClock
from taskit.execution import Executor, RunningJob
from taskit.job import OutcomeKind, utc_from_timestamp
from tests._doubles import StubTask, WatchedBroker, no_app, stub_job

pytestmark = pytest.mark.anyio

WAIT = 5.0  # upper bound on any wait: a hang fails the test instead of stalling the run


def make_app(broker: MemoryBroker | None = None, **settings: Any) -> App:
    settings.setdefault("backoff", 0.0)
    return App(broker if broker is not None else MemoryBroker(), settings=Settings(**settings))


async def burst(app: App, concurrency: int = 4) -> WorkerStats:
    with anyio.fail_after(WAIT):
        return await app.worker(concurrency=concurrency).run(burst=True)


async def stored(app: App, job_id: str) -> Job:
    job = await app.get_job(job_id)
    assert job is not None
    return job


def no_delay(attempt: int) -> float:
    return 0.0


# -- argument conversion ----------------------------------------------------------------------
class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    label: str
    size: float


async def test_arguments_arrive_as_their_annotated_types() -> None:
    app = make_app()
    seen: dict[str, Any] = {}

    @app.task
    async def handler(
        when: datetime, ident: uuid.UUID, point: Point, box: Box, nums: list[int], *, tag: str
    ) -> None:
        seen.update(when=when, ident=ident, point=point, box=box, nums=nums, tag=tag)

    when = datetime(2030, 5, 17, 12, 30, tzinfo=UTC)
    ident = uuid.uuid4()
    job = await handler.enqueue(when, ident, Point(1, 2), Box("crate", 2.5), [1, 2, 3], tag="t")
    stats = await burst(app)

    assert stats.completed == 1
    assert (await stored(app, job.id)).status is JobStatus.COMPLETED
    assert seen == {
        "when": when,
        "ident": ident,
        "point": Point(1, 2),
        "box": Box("crate", 2.5),
        "nums": [1, 2, 3],
        "tag": "t",
    }
    assert type(seen["when"]) is datetime
    assert type(seen["ident"]) is uuid.UUID
    assert type(seen["point"]) is Point
    assert type(seen["box"]) is Box


async def test_sync_handler_gets_converted_arguments_too() -> None:
    app = make_app()
    seen: list[Any] = []

    @app.task
    def handler(point: Point, stamps: list[datetime]) -> None:
        seen.extend([point, stamps])

    stamp = datetime(2031, 1, 1, tzinfo=UTC)
    await handler.enqueue(Point(3, 4), [stamp])
    await burst(app)

    assert seen == [Point(3, 4), [stamp]]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("not a number",), {}, "argument 'count'"),
        (("12",), {}, "argument 'count'"),  # no silent coercion: a str is not an int
        ((1, 2), {}, "too many positional arguments"),
        ((), {}, "missing a required argument"),
        ((1,), {"extra": True}, "unexpected keyword argument"),
    ],
)
async def test_a_payload_that_does_not_fit_fails_permanently(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    app = make_app(max_retries=3)
    calls = 0
    failures: list[BaseException] = []

    async def hook(job: Job, error: BaseException) -> None:
        failures.append(error)

    @app.task(name="typed.count", on_failure=hook)
    async def count_up(count: int) -> int:
        nonlocal calls
        calls += 1
        return count + 1

    producer = App(app.broker, settings=app.settings)  # a producer that lacks the task
    job = await producer.remote("typed.count").enqueue(*args, **kwargs)

    stats = await burst(app)
    result = await app.result(job.id, timeout=WAIT)

    failed = await stored(app, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 1
    assert calls == 0
    assert result.success is False
    assert result.error_type == "SerializationError"
    assert result.error is not None
    assert match in result.error
    assert "typed.count" in result.error
    assert stats.failed == 1
    assert stats.retried == 0
    assert len(failures) == 1


# -- results ----------------------------------------------------------------------------------
async def test_a_plain_return_value_becomes_a_successful_result() -> None:
    app = make_app()

    @app.task
    async def make(n: int) -> dict[str, Any]:
        return {"n": n, "items": [1, 2]}

    job = await make.enqueue(3)
    await burst(app)

    result = await app.result(job.id, timeout=WAIT)
    assert result.success is True
    assert result.value == {"n": 3, "items": [1, 2]}
    assert result.error is None
    done = await stored(app, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.completed_at is not None
    assert done.result == result


async def test_returning_an_unsuccessful_result_fails_without_retry() -> None:
    app = make_app(max_retries=3)
    calls = 0

    @app.task
    async def check() -> JobResult:
        nonlocal calls
        calls += 1
        return JobResult(success=False, error="card declined", error_type="Declined")

    job = await check.enqueue()
    stats = await burst(app)

    failed = await stored(app, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 1
    assert calls == 1
    assert failed.error == "card declined"
    result = await app.result(job.id, timeout=WAIT)
    assert (result.success, result.error, result.error_type) == (False, "card declined", "Declined")
    assert (stats.failed, stats.retried) == (1, 0)


async def test_raising_fail_fails_at_once() -> None:
    app = make_app(max_retries=3)
    calls = 0

    @app.task
    def refuse() -> None:
        nonlocal calls
        calls += 1
        raise Fail("no such account")

    job = await refuse.enqueue()
    stats = await burst(app)

    failed = await stored(app, job.id)
    assert failed.status is JobStatus.FAILED
    assert (failed.attempts, calls) == (1, 1)
    assert failed.error == "no such account"
    assert failed.error_type == "Fail"
    assert failed.failed_at is not None
    assert (stats.failed, stats.retried, stats.dead_lettered) == (1, 0, 0)


@pytest.mark.parametrize("delay", [45, timedelta(seconds=45)], ids=["seconds", "timedelta"])
async def test_retry_runs_again_after_its_delay(delay: float | timedelta) -> None:
    clock = FakeClock()
    broker = WatchedBroker(clock)
    app = make_app(broker, backoff=1000.0)
    calls: list[float] = []

    @app.task
    async def poll() -> str:
        calls.append(clock.time())
        if len(calls) == 1:
            raise Retry(delay=delay)
        return "ready"

    job = await poll.enqueue()
    async with app.worker(concurrency=1):
        [first] = await broker.outcomes(1)
        assert (first.kind, first.delay) == (OutcomeKind.RETRY, 45.0)
        waiting = await stored(app, job.id)
        assert waiting.status is JobStatus.RETRYING
        assert waiting.scheduled_at == utc_from_timestamp(calls[0] + 45)
        clock.advance(45)
        result = await app.result(job.id, timeout=WAIT)

    assert result.value == "ready"
    assert calls == [calls[0], calls[0] + 45]
    assert (await stored(app, job.id)).attempts == 2


async def test_retry_without_a_delay_uses_the_backoff_and_respects_max_retries() -> None:
    app = make_app(max_retries=2)
    calls = 0
    failures: list[BaseException] = []

    @app.task(backoff=no_delay, on_failure=lambda job, error: failures.append(error))
    async def flap() -> None:
        nonlocal calls
        calls += 1
        raise Retry()

    job = await flap.enqueue()
    stats = await burst(app)

    dead = await stored(app, job.id)
    assert dead.status is JobStatus.DEAD_LETTER
    assert calls == 3
    assert (stats.retried, stats.dead_lettered) == (2, 1)
    assert len(failures) == 1  # the retries were requested; the dead letter is a failure
    assert isinstance(failures[0], Retry)


async def test_an_exception_retries_until_max_retries_then_dead_letters() -> None:
    app = make_app()
    calls = 0

    @app.task(max_retries=3, backoff=no_delay)
    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"boom {calls}")

    job = await broken.enqueue()
    stats = await burst(app)

    assert calls == 4  # the first run and three retries
    dead = await stored(app, job.id)
    assert dead.status is JobStatus.DEAD_LETTER
    assert dead.attempts == 4
    assert dead.error == "boom 4"
    assert dead.error_type == "ValueError"
    assert dead.traceback is not None
    assert "ValueError: boom 4" in dead.traceback
    assert "in broken" in dead.traceback
    assert [j.id for j in await app.broker.dead_letters(dead.queue)] == [job.id]
    assert (stats.retried, stats.dead_lettered, stats.completed) == (3, 1, 0)
    result = await app.result(job.id, timeout=WAIT)
    assert (result.success, result.error_type) == (False, "ValueError")


async def test_max_retries_zero_runs_once() -> None:
    app = make_app()
    calls = 0

    @app.task(max_retries=0)
    def once() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("no")

    job = await once.enqueue()
    await burst(app)

    assert calls == 1
    assert (await stored(app, job.id)).status is JobStatus.DEAD_LETTER


async def test_a_later_success_keeps_the_last_failure_for_debugging() -> None:
    app = make_app()
    calls = 0

    @app.task(max_retries=3, backoff=no_delay)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise KeyError(f"missing {calls}")
        return "ok"

    job = await flaky.enqueue()
    stats = await burst(app)

    done = await stored(app, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 3
    assert done.error_type == "KeyError"
    assert done.traceback is not None
    assert "missing 2" in done.traceback
    assert (stats.retried, stats.completed) == (2, 1)


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        (lambda attempt: 10.0 * attempt, [10.0, 20.0, 30.0]),
        (Exponential(base=4.0, factor=3.0, jitter=False), [4.0, 12.0, 36.0]),
        (Exponential(base=4.0, cap=6.0, jitter=False), [4.0, 6.0, 6.0]),
    ],
    ids=["callable", "exponential", "capped"],
)
async def test_retries_are_spaced_by_the_backoff_policy(
    policy: BackoffPolicy, delays: list[float]
) -> None:
    clock = FakeClock()
    broker = WatchedBroker(clock)
    app = make_app(broker)
    runs: list[float] = []

    @app.task(max_retries=3, backoff=policy)
    async def broken() -> None:
        runs.append(clock.time())
        raise OSError("down")

    job = await broken.enqueue()
    async with app.worker(concurrency=1):
        for attempt, delay in enumerate(delays, start=1):
            [*_, outcome] = await broker.outcomes(attempt)
            assert (outcome.kind, outcome.delay) == (OutcomeKind.RETRY, delay)
            waiting = await stored(app, job.id)
            assert waiting.status is JobStatus.RETRYING
            assert waiting.attempts == attempt
            assert waiting.scheduled_at == utc_from_timestamp(clock.time() + delay)
            clock.advance(delay)
        [*_, last] = await broker.outcomes(len(delays) + 1)

    assert last.kind is OutcomeKind.DEAD_LETTER
    assert [b - a for a, b in itertools.pairwise(runs)] == delays
    assert (await stored(app, job.id)).status is JobStatus.DEAD_LETTER


@pytest.mark.parametrize(
    "policy",
    [lambda attempt: 1 / 0, lambda attempt: float("nan")],
    ids=["raises", "nan"],
)
async def test_a_broken_backoff_policy_falls_back_and_the_worker_lives_on(
    policy: BackoffPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    broker = WatchedBroker(clock)
    app = make_app(broker)
    calls = 0

    @app.task(max_retries=1, backoff=policy)
    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise OSError("down")

    job = await broken.enqueue()
    with caplog.at_level(logging.ERROR, logger="taskit.execution"):
        async with app.worker(concurrency=1):
            [first] = await broker.outcomes(1)
            assert first.kind is OutcomeKind.RETRY
            assert 0.5 <= first.delay <= 1.0  # the default exponential backoff, attempt 1
            clock.advance(first.delay)
            [_, second] = await broker.outcomes(2)

    assert second.kind is OutcomeKind.DEAD_LETTER
    assert (await stored(app, job.id)).status is JobStatus.DEAD_LETTER
    assert calls == 2
    assert any("backoff policy" in r.getMessage() for r in caplog.records)


async def test_the_backoff_is_asked_only_when_a_retry_will_happen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """docs/migrating.md's RQ spelling indexes a list of delays: asked after the final attempt
    it raised IndexError, logged on every dead letter."""
    clock = FakeClock()
    broker = WatchedBroker(clock)
    app = make_app(broker)
    asked: list[int] = []

    def rq_style(attempt: int) -> float:
        asked.append(attempt)
        return [10, 60, 60][attempt - 1]

    @app.task(max_retries=3, backoff=rq_style)
    async def broken() -> None:
        raise OSError("down")

    job = await broken.enqueue()
    with caplog.at_level(logging.WARNING, logger="taskit"):
        async with app.worker(concurrency=1):
            for count, delay in enumerate([10, 60, 60], start=1):
                [*_, outcome] = await broker.outcomes(count)
                assert (outcome.kind, outcome.delay) == (OutcomeKind.RETRY, delay)
                clock.advance(delay)
            [*_, last] = await broker.outcomes(4)

    assert last.kind is OutcomeKind.DEAD_LETTER
    assert asked == [1, 2, 3]
    assert (await stored(app, job.id)).status is JobStatus.DEAD_LETTER
    assert not [r for r in caplog.records if "backoff" in r.getMessage()]


@pytest.mark.parametrize("answer", [-1.0, None, "5", True, math.nan, -math.inf], ids=repr)
async def test_a_backoff_answer_that_is_no_delay_retries_with_the_default_and_logs_once(
    answer: object, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    broker = WatchedBroker(clock)
    app = make_app(broker)

    @app.task(max_retries=1, backoff=lambda attempt: answer)  # type: ignore[arg-type, return-value]
    async def broken() -> None:
        raise OSError("down")

    job = await broken.enqueue()
    with caplog.at_level(logging.WARNING, logger="taskit"):
        async with app.worker(concurrency=1):
            [first] = await broker.outcomes(1)
            clock.advance(first.delay)
            [_, second] = await broker.outcomes(2)

    assert first.kind is OutcomeKind.RETRY
    assert 0.5 <= first.delay <= 1.0  # the default exponential backoff, attempt 1
    assert second.kind is OutcomeKind.DEAD_LETTER  # the job went on: retried, then dead
    assert (await stored(app, job.id)).attempts == 2
    [record] = [r for r in caplog.records if "backoff" in r.getMessage()]
    assert repr(answer) in record.getMessage()
    assert "default exponential backoff" in record.getMessage()
    assert record.job_id == job.id  # type: ignore[attr-defined]


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1.0])
def test_retry_rejects_a_delay_that_is_not_a_finite_number_of_seconds(delay: float) -> None:
    with pytest.raises(ValueError, match="finite number of seconds"):
        Retry(delay=delay)


@pytest.mark.parametrize("delay", [1e300, 10**12])
async def test_a_retry_delay_too_long_to_store_is_cut_to_a_year(delay: float) -> None:
    clock = FakeClock()
    broker = WatchedBroker(clock)
    app = make_app(broker)

    @app.task(max_retries=1)
    async def later() -> None:
        raise Retry(delay=delay)

    @app.task
    async def after() -> str:
        return "the worker lives on"

    job = await later.enqueue()
    async with app.worker(concurrency=1):
        [first] = await broker.outcomes(1)
        follow = await after.enqueue()
        assert (await app.result(follow.id, timeout=WAIT)).value == "the worker lives on"

    assert (first.kind, first.delay) == (OutcomeKind.RETRY, 365 * 86400.0)
    waiting = await stored(app, job.id)
    assert waiting.status is JobStatus.RETRYING
    assert waiting.scheduled_at == utc_from_timestamp(clock.time() + 365 * 86400.0)
    assert (await app.stats())["default"].scheduled == 1


async def test_jittered_exponential_backoff_stays_in_the_upper_half() -> None:
    policy = Exponential(base=2.0)
    for attempt, nominal in [(1, 2.0), (2, 4.0), (3, 8.0)]:
        for _ in range(50):
            assert nominal / 2 <= policy(attempt) <= nominal


# -- unencodable results ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        object(),
        {"nested": [object()]},
        2**70,
        "lone \ud800 surrogate",
        JobResult(success=True, value=object()),
    ],
    ids=["object", "nested", "huge-int", "surrogate", "result-with-object"],
)
async def test_an_unencodable_return_value_fails_the_job(value: Any) -> None:
    app = make_app(max_retries=3)

    @app.task
    async def produce() -> Any:
        return value

    job = await produce.enqueue()
    stats = await burst(app)

    failed = await stored(app, job.id)  # and the job stays readable
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 1
    assert failed.error_type == "SerializationError"
    assert failed.error is not None
    assert f"result of task {produce.name!r} cannot be stored: " in failed.error
    assert "is not serializable" in failed.error
    assert (stats.failed, stats.retried) == (1, 0)


# -- on_failure -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_failure_runs_on_every_failure(kind: str) -> None:
    app = make_app()
    seen: list[tuple[int, str, str]] = []

    def record(job: Job, error: BaseException) -> None:
        seen.append((job.attempts, type(error).__name__, str(error)))

    async def record_async(job: Job, error: BaseException) -> None:
        record(job, error)

    hook = record if kind == "sync" else record_async

    @app.task(max_retries=2, backoff=no_delay, on_failure=hook)
    async def always() -> None:
        raise ConnectionError("refused")

    @app.task(max_retries=2, backoff=no_delay, on_failure=hook)
    async def stop_now() -> None:
        raise Fail("bad input")

    @app.task(max_retries=2, backoff=no_delay, on_failure=hook)
    async def fine() -> int:
        return 1

    first = await always.enqueue()
    await burst(app, concurrency=1)
    assert seen == [
        (1, "ConnectionError", "refused"),
        (2, "ConnectionError", "refused"),
        (3, "ConnectionError", "refused"),
    ]
    assert (await stored(app, first.id)).status is JobStatus.DEAD_LETTER

    seen.clear()
    await stop_now.enqueue()
    await fine.enqueue()
    await burst(app, concurrency=1)
    assert seen == [(1, "Fail", "bad input")]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_exception_in_on_failure_is_logged_and_changes_nothing(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    hook_calls = 0

    def explode(job: Job, error: BaseException) -> None:
        nonlocal hook_calls
        hook_calls += 1
        raise RuntimeError("hook is broken")

    async def explode_async(job: Job, error: BaseException) -> None:
        explode(job, error)

    calls = 0

    @app.task(
        max_retries=2, backoff=no_delay, on_failure=explode if kind == "sync" else explode_async
    )
    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("handler failed")

    job = await broken.enqueue()
    with caplog.at_level(logging.ERROR, logger="taskit.execution"):
        stats = await burst(app)

    dead = await stored(app, job.id)
    assert dead.status is JobStatus.DEAD_LETTER
    assert dead.error == "handler failed"  # the hook's error is not the job's
    assert calls == hook_calls == 3
    assert (stats.retried, stats.dead_lettered) == (2, 1)
    logged = [r for r in caplog.records if "on_failure" in r.getMessage()]
    assert len(logged) == 3
    assert all(r.exc_info and "hook is broken" in str(r.exc_info[1]) for r in logged)
    assert logged[0].job_id == job.id  # type: ignore[attr-defined]


# -- timeouts ---------------------------------------------------------------------------------
async def test_an_async_handler_past_its_timeout_is_cancelled_and_retried() -> None:
    broker = WatchedBroker()
    app = make_app(broker)
    starts = 0
    cancelled = 0
    errors: list[BaseException] = []

    @app.task(
        timeout=0.05,
        max_retries=1,
        backoff=no_delay,
        on_failure=lambda job, error: errors.append(error),
    )
    async def slow() -> None:
        nonlocal starts, cancelled
        starts += 1
        try:
            await anyio.sleep_forever()
        finally:
            cancelled += 1

    job = await slow.enqueue()
    stats = await burst(app)

    first, second = await broker.outcomes(2)
    assert (first.kind, first.error_type) == (OutcomeKind.RETRY, "JobTimeoutError")
    assert (second.kind, second.error_type) == (OutcomeKind.DEAD_LETTER, "JobTimeoutError")
    assert starts == cancelled == 2
    assert all(isinstance(e, JobTimeoutError) for e in errors)
    assert len(errors) == 2
    dead = await stored(app, job.id)
    assert dead.error_type == "JobTimeoutError"
    assert dead.error is not None
    assert "timed out after 0.05 s" in dead.error
    assert (stats.retried, stats.dead_lettered) == (1, 1)


async def test_a_per_job_timeout_overrides_the_tasks() -> None:
    app = make_app()

    @app.task(timeout=60.0, max_retries=0)
    async def slow() -> None:
        await anyio.sleep_forever()

    job = await slow.options(timeout=0.05).enqueue()
    await burst(app)

    assert (await stored(app, job.id)).error_type == "JobTimeoutError"


async def test_a_sync_handler_past_its_timeout_fails_and_the_worker_goes_on() -> None:
    """A thread cannot be cancelled: the timed-out sync handler is abandoned. Its thread runs on
    until the function returns by itself, and whatever it returns then is discarded: the job
    already failed with JobTimeoutError. The worker does not wait for it."""
    app = make_app()
    release = threading.Event()
    thread_done = threading.Event()

    @app.task(timeout=0.05, max_retries=0)
    def stuck() -> str:
        try:
            release.wait(WAIT)
            return "too late"
        finally:
            thread_done.set()

    @app.task
    def quick() -> str:
        return "quick"

    stuck_job = await stuck.enqueue()
    quick_job = await quick.enqueue()
    stats = await burst(app, concurrency=1)  # one runner: the quick job runs after the timeout

    timed_out = await stored(app, stuck_job.id)
    assert timed_out.status is JobStatus.DEAD_LETTER
    assert timed_out.error_type == "JobTimeoutError"
    assert (await app.result(quick_job.id, timeout=WAIT)).value == "quick"
    assert (stats.completed, stats.dead_lettered) == (1, 1)
    assert not thread_done.is_set()  # the abandoned thread is still running

    release.set()
    assert await anyio.to_thread.run_sync(thread_done.wait, WAIT)
    after = await stored(app, stuck_job.id)
    assert after == timed_out  # its late return value changed nothing


async def test_a_worker_counts_its_abandoned_sync_handler_until_that_returns() -> None:
    # What the CLI reads once the worker stopped, to exit without joining such a thread.
    app = make_app()
    release = threading.Event()
    threads: list[threading.Thread] = []

    @app.task(timeout=0.05, max_retries=0)
    def stuck() -> None:
        threads.append(threading.current_thread())
        release.wait(WAIT)

    await stuck.enqueue()
    worker = app.worker(concurrency=1)
    with anyio.fail_after(WAIT):
        await worker.run(burst=True)
    assert worker.threads_running == 1
    release.set()
    await anyio.to_thread.run_sync(threads[0].join, WAIT)  # the worker closed it: it ends
    assert not threads[0].is_alive()
    assert worker.threads_running == 0


# -- where handlers run -----------------------------------------------------------------------
async def test_async_handlers_run_on_the_loop_and_sync_ones_in_threads() -> None:
    app = make_app()
    threads: dict[str, int] = {}

    @app.task
    async def on_loop() -> None:
        threads["async"] = threading.get_ident()

    @app.task
    def in_thread() -> None:
        threads["sync"] = threading.get_ident()

    await on_loop.enqueue()
    await in_thread.enqueue()
    stats = await burst(app)

    assert stats.completed == 2
    assert threads["async"] == threading.get_ident()
    assert threads["sync"] != threading.get_ident()


async def test_sync_handlers_run_concurrently_up_to_the_thread_limit() -> None:
    app = make_app(sync_concurrency=2)
    barrier = threading.Barrier(2, timeout=WAIT)  # passes only if two handlers overlap
    lock = threading.Lock()
    active = peak = 0

    @app.task
    def pair() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            barrier.wait()
        finally:
            with lock:
                active -= 1

    for _ in range(4):
        await pair.enqueue()
    stats = await burst(app, concurrency=4)

    assert stats.completed == 4
    assert peak == 2


async def test_a_job_for_an_unknown_task_is_dead_lettered() -> None:
    app = make_app()
    job = await app.remote("nobody.handles.this").enqueue(1)

    stats = await burst(app)

    dead = await stored(app, job.id)
    assert dead.status is JobStatus.DEAD_LETTER
    assert dead.error_type == "UnknownTaskError"
    assert stats.dead_lettered == 1


# -- without an App ---------------------------------------------------------------------------
async def test_the_executor_runs_jobs_from_a_task_mapping_without_an_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(App, "__init__", no_app)
    seen: list[tuple[str, str]] = []

    async def add(a: int, b: int) -> int:
        return a + b

    def boom() -> None:
        raise ValueError("no")

    def hook(job: Job, error: BaseException) -> None:
        seen.append((job.task, type(error).__name__))

    failing = StubTask(boom, name="boom")
    failing.opts.on_failure = hook
    tasks = {"add": StubTask(add, name="add"), "boom": failing}
    broker = MemoryBroker()
    await broker.enqueue([stub_job("add", 2, 3), stub_job("boom", max_retries=1), stub_job("x")])
    leases = await broker.reserve(["default"], count=3, lease=30.0, timeout=0)
    executor = Executor(tasks, anyio.CapacityLimiter(1))

    outcomes = [await executor.execute(RunningJob(lease)) for lease in leases]

    assert [o.kind if o else None for o in outcomes] == [
        OutcomeKind.COMPLETE, OutcomeKind.RETRY, OutcomeKind.DEAD_LETTER,
    ]  # fmt: skip
    done, retry, dead = (o for o in outcomes if o is not None)
    assert done.result is not None
    assert done.result.value == 5
    assert (retry.error_type, retry.delay) == ("ValueError", 0.0)
    assert dead.error_type == "UnknownTaskError"
    assert seen == [("boom", "ValueError")]
