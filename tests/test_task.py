"""``@app.task`` and the ways a Task enqueues: options, argument binding, encoding, schedule.

Every bad input must raise its named error and leave the broker exactly as it was.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from taskit import (
    App,
    DuplicateTaskError,
    Exponential,
    JobStatus,
    MemoryBroker,
    QueueStats,
    SerializationError,
    Settings,
    Task,
)
from taskit.clock import FakeClock
from taskit.job import utc_from_timestamp

pytestmark = pytest.mark.anyio

QUEUES = ["default", "other", "high"]


def make_app(clock: FakeClock | None = None) -> App:
    return App(MemoryBroker(clock=clock), settings=Settings())


def add(a: int, b: int = 0) -> int:
    return a + b


async def assert_untouched(app: App) -> None:
    """Nothing was stored: every count is zero and there is nothing to reserve."""
    stats = await app.stats()
    assert all(s == QueueStats() for s in stats.values()), stats
    assert await app.broker.reserve(QUEUES, count=10, lease=30.0, timeout=0) == []


# -- the decorator --------------------------------------------------------------------------
def test_bare_decorator_registers_under_module_qualname() -> None:
    app = make_app()

    @app.task
    def double(x: int) -> int:
        return 2 * x

    assert isinstance(double, Task)
    name = "tests.test_task.test_bare_decorator_registers_under_module_qualname.<locals>.double"
    assert double.name == name
    assert app.tasks[name] is double
    assert app.get_task(name) is double
    settings = Settings()
    assert double.opts.queue == settings.default_queue
    assert double.opts.max_retries == settings.max_retries
    assert double.opts.priority == 0
    assert double.opts.timeout is None


def test_decorator_with_options() -> None:
    app = make_app()

    def policy(attempt: int) -> float:
        return 1.5 * attempt

    def hook(job: Any, error: BaseException) -> None:
        pass

    @app.task(
        name="mail.send",
        max_retries=5,
        backoff=policy,
        timeout=2.5,
        queue="mail",
        priority=7,
        on_failure=hook,
    )
    async def send(to: str) -> None:
        pass

    assert send.name == "mail.send"
    assert app.tasks["mail.send"] is send
    opts = send.opts
    assert (opts.queue, opts.priority, opts.max_retries, opts.timeout) == ("mail", 7, 5, 2.5)
    assert opts.backoff is policy
    assert opts.on_failure is hook


def test_numeric_backoff_is_an_exponential_base() -> None:
    app = make_app()

    @app.task(backoff=2)
    def job() -> None:
        pass

    policy = job.opts.backoff
    assert isinstance(policy, Exponential)
    assert policy.base == 2.0


def test_default_queue_of_the_app_applies() -> None:
    app = App(MemoryBroker(), default_queue="work", settings=Settings())

    @app.task
    def job() -> None:
        pass

    assert job.opts.queue == "work"


def test_duplicate_name_is_an_error_at_decoration() -> None:
    app = make_app()

    @app.task(name="dup")
    def first() -> int:
        return 1

    with pytest.raises(DuplicateTaskError, match="'dup'"):

        @app.task(name="dup")
        def second() -> int:
            return 2

    assert app.tasks["dup"] is first
    assert isinstance(DuplicateTaskError("x"), ValueError)


def test_same_function_registered_twice_is_a_duplicate() -> None:
    app = make_app()
    app.task(add)
    with pytest.raises(DuplicateTaskError):
        app.task(add)


def test_calling_the_task_calls_the_function() -> None:
    app = make_app()
    calls: list[tuple[int, int]] = []

    @app.task
    def mul(a: int, b: int) -> int:
        calls.append((a, b))
        return a * b

    assert mul(3, b=4) == 12
    assert calls == [(3, 4)]
    assert mul.__wrapped__ is mul.fn  # type: ignore[attr-defined]


async def test_calling_an_async_task_returns_its_coroutine() -> None:
    app = make_app()

    @app.task
    async def greet(name: str) -> str:
        return f"hi {name}"

    assert await greet("ada") == "hi ada"
    assert await app.stats() == {}  # calling never enqueues


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 1.5}, TypeError, "max_retries"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -3}, ValueError, "timeout"),
        ({"timeout": "5"}, ValueError, "timeout"),
        ({"timeout": math.nan}, ValueError, "timeout"),
        ({"queue": ""}, ValueError, "queue"),
        ({"queue": "  "}, ValueError, "queue"),
        ({"queue": 5}, ValueError, "queue"),
        ({"priority": "high"}, TypeError, "priority"),
        ({"priority": 1.5}, TypeError, "priority"),
        ({"priority": True}, TypeError, "priority"),
        ({"backoff": -1}, ValueError, "backoff"),
        ({"backoff": "fast"}, TypeError, "backoff"),
        ({"backoff": True}, TypeError, "backoff"),
        ({"on_failure": 5}, TypeError, "on_failure"),
        # the settings' bounds: a job past 64 bits could not be encoded, a timeout must end
        ({"max_retries": 2**31}, ValueError, "max_retries must be <= 2147483647"),
        ({"max_retries": 2**70}, ValueError, "max_retries must be <= 2147483647"),
        ({"priority": 2**63}, ValueError, "priority must be <= 2147483647"),
        ({"priority": -(2**63) - 1}, ValueError, "priority must be >= -2147483647"),
        ({"timeout": math.inf}, ValueError, "timeout"),
        ({"timeout": 1e300}, ValueError, "timeout"),
        ({"backoff": math.inf}, ValueError, "backoff"),
        ({"backoff": math.nan}, ValueError, "backoff"),
    ],
)
def test_bad_task_options_raise_named_errors(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    app = make_app()
    with pytest.raises(error, match=match):
        app.task(name="bad", **options)(add)
    assert "bad" not in app.tasks


def test_decorating_a_non_callable_is_a_type_error() -> None:
    app = make_app()
    with pytest.raises(TypeError, match="decorates a function"):
        app.task(name="x")(42)  # type: ignore[arg-type]


# -- enqueue: binding and encoding ------------------------------------------------------------
async def test_enqueue_stores_a_pending_job_with_its_arguments() -> None:
    app = make_app()
    task = app.task(add)

    job = await task.enqueue(1, b=2)

    assert job.task == task.name
    assert job.status is JobStatus.PENDING
    assert (job.args, job.kwargs) == ((1,), {"b": 2})
    assert job.attempts == 0
    assert job.created_at.tzinfo is not None
    stored = await app.get_job(job.id)
    assert stored is not None
    assert stored.id == job.id
    assert (await app.stats())["default"].queued == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((), {}, "missing a required argument: 'a'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1,), {"c": 3}, "unexpected keyword argument 'c'"),
        ((1,), {"a": 3}, "multiple values for argument 'a'"),
    ],
)
async def test_a_call_that_does_not_bind_is_a_type_error_and_enqueues_nothing(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    app = make_app()
    task = app.task(add)

    with pytest.raises(TypeError, match=match) as caught:
        await task.enqueue(*args, **kwargs)
    assert task.name in str(caught.value)
    with pytest.raises(TypeError, match=match):
        await task.schedule(10, *args, **kwargs)
    await assert_untouched(app)


@pytest.mark.parametrize(
    ("args", "kwargs", "culprit"),
    [
        ((1, object()), {}, "argument 'b'"),
        ((1,), {"b": lambda: 1}, "argument 'b'"),
        (([1, {2, object()}],), {}, "argument 'a'"),
        ((2**70,), {}, "argument 'a'"),
    ],
)
async def test_an_unencodable_argument_names_the_parameter_and_enqueues_nothing(
    args: tuple[Any, ...], kwargs: dict[str, Any], culprit: str
) -> None:
    app = make_app()
    task = app.task(add)

    with pytest.raises(SerializationError, match=culprit):
        await task.enqueue(*args, **kwargs)
    with pytest.raises(SerializationError, match=culprit):
        task.prepare(*args, **kwargs)
    await assert_untouched(app)


async def test_var_positional_and_keyword_arguments_are_named_too() -> None:
    app = make_app()

    @app.task
    def spread(first: int, *rest: int, **extra: int) -> None:
        pass

    with pytest.raises(SerializationError, match="positional argument 2"):
        await spread.enqueue(1, 2, object())  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="argument 'flag'"):
        await spread.enqueue(1, flag=object())  # type: ignore[arg-type]
    job = await spread.enqueue(1, 2, 3, x=4)
    assert (job.args, job.kwargs) == ((1, 2, 3), {"x": 4})


# -- schedule ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("when", "delay"),
    [(timedelta(seconds=30), 30.0), (5, 5.0), (2.5, 2.5), (0, 0.0)],
    ids=["timedelta", "int", "float", "zero"],
)
async def test_schedule_with_a_delay(when: timedelta | float, delay: float) -> None:
    clock = FakeClock()
    app = make_app(clock)
    task = app.task(add)

    job = await task.schedule(when, 1, 2)

    if delay:
        assert job.status is JobStatus.SCHEDULED
        assert job.scheduled_at == utc_from_timestamp(clock.time() + delay)
        assert (await app.stats())["default"].scheduled == 1
    else:
        assert job.status is JobStatus.PENDING
        assert (await app.stats())["default"].queued == 1
    assert job.args == (1, 2)


async def test_schedule_at_an_aware_datetime() -> None:
    clock = FakeClock()
    app = make_app(clock)
    task = app.task(add)
    when = utc_from_timestamp(clock.time() + 90).astimezone(timezone(timedelta(hours=2)))

    job = await task.schedule(when, 1)

    assert job.status is JobStatus.SCHEDULED
    assert job.scheduled_at == when
    assert job.scheduled_at is not None
    assert job.scheduled_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("when", "error", "match"),
    [
        (datetime(2030, 1, 1), ValueError, "aware datetime"),
        (-1, ValueError, ">= 0"),
        (-0.5, ValueError, ">= 0"),
        (timedelta(seconds=-10), ValueError, ">= 0"),
        (math.nan, ValueError, ">= 0"),
        (math.inf, ValueError, "delay"),
        (timedelta.max, ValueError, "delay"),
        ("tomorrow", TypeError, "aware datetime, a timedelta or seconds"),
        (True, TypeError, "aware datetime, a timedelta or seconds"),
        # were a raw OverflowError: an int past float range, a datetime past the range in UTC
        (10**400, ValueError, "too far in the future"),
        (datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))), ValueError, "in UTC"),
        (datetime.min.replace(tzinfo=timezone(timedelta(hours=5))), ValueError, "in UTC"),
    ],
)
async def test_bad_when_is_a_clear_error_and_enqueues_nothing(
    when: Any, error: type[Exception], match: str
) -> None:
    app = make_app(FakeClock())
    task = app.task(add)

    with pytest.raises(error, match=match):
        await task.schedule(when, 1)
    await assert_untouched(app)


# -- options ----------------------------------------------------------------------------------
async def test_options_land_on_the_job() -> None:
    app = make_app()
    task = app.task(add)

    job = await task.options(
        queue="other",
        priority=9,
        job_id="job-1",
        max_retries=7,
        timeout=4.5,
        metadata={"trace": "abc", "n": 1},
        created_by="billing",
    ).enqueue(1, b=2)

    stored = await app.get_job("job-1")
    assert stored is not None
    for seen in (job, stored):
        assert seen.id == "job-1"
        assert seen.queue == "other"
        assert seen.priority == 9
        assert seen.max_retries == 7
        assert seen.timeout == 4.5
        assert seen.metadata == {"trace": "abc", "n": 1}
        assert seen.created_by == "billing"
        assert (seen.args, seen.kwargs) == ((1,), {"b": 2})
    assert (await app.stats(["other", "default"]))["other"].queued == 1
    assert (await app.stats(["default"]))["default"].queued == 0


async def test_unset_options_keep_the_tasks_own() -> None:
    app = make_app()
    task = app.task(queue="q", priority=3, max_retries=1, timeout=9.0)(add)

    job = await task.options(created_by="me").enqueue(1)

    assert (job.queue, job.priority, job.max_retries, job.timeout) == ("q", 3, 1, 9.0)
    assert job.created_by == "me"


async def test_options_variant_schedules_too() -> None:
    clock = FakeClock()
    app = make_app(clock)
    task = app.task(add)

    job = await task.options(queue="other", job_id="later").schedule(60, 1)

    assert job.id == "later"
    assert job.queue == "other"
    assert job.status is JobStatus.SCHEDULED
    assert job.scheduled_at == utc_from_timestamp(clock.time() + 60)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"queue": ""}, ValueError, "queue"),
        ({"priority": "1"}, TypeError, "priority"),
        ({"max_retries": -2}, ValueError, "max_retries"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"job_id": ""}, ValueError, "job_id"),
        ({"job_id": 12}, ValueError, "job_id"),
        ({"metadata": ["a"]}, TypeError, "metadata"),
        ({"created_by": 3}, TypeError, "created_by"),
    ],
)
def test_bad_enqueue_options_raise_named_errors(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    app = make_app()
    task = app.task(add)
    with pytest.raises(error, match=match):
        task.options(**options)


async def test_unencodable_metadata_is_a_serialization_error_and_enqueues_nothing() -> None:
    app = make_app()
    task = app.task(add)

    with pytest.raises(SerializationError):
        await task.options(metadata={"bad": object()}).enqueue(1)
    await assert_untouched(app)


async def test_the_same_job_id_twice_gives_one_job() -> None:
    app = make_app()
    task = app.task(add)

    first = await task.options(job_id="only-once").enqueue(1)
    second = await task.options(job_id="only-once").enqueue(2)

    assert second.id == first.id == "only-once"
    assert second.args == (1,)  # the job already waiting is kept as it is
    assert (await app.stats())["default"].queued == 1
    leases = await app.broker.reserve(["default"], count=10, lease=30.0, timeout=0)
    assert [lease.job.id for lease in leases] == ["only-once"]


async def test_prepare_builds_a_job_without_enqueueing() -> None:
    app = make_app()
    task = app.task(add)

    job = task.options(priority=2).prepare(1, b=5)

    assert (job.task, job.priority, job.args, job.kwargs) == (task.name, 2, (1,), {"b": 5})
    await assert_untouched(app)
