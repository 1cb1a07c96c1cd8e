"""Task options are defined once (``taskit.options.OPTIONS``): every spelling takes the same names,
types and defaults, and refuses a bad value with the same error. A task and its variants work over a
``Producer`` alone, without an App."""

from __future__ import annotations

import inspect
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, get_overloads

import pytest

import taskit
from taskit import App, Exponential, Job, JobResult, JobStatus, MemoryBroker, Settings
from taskit.handlers import JobHandler, handler_task
from taskit.options import (
    CALL_OPTIONS,
    OPTIONS,
    TASK_OPTIONS,
    CallOptions,
    TaskOptions,
    resolve_options,
)
from taskit.producer import Producer
from taskit.service import JobService
from taskit.task import Task

pytestmark = pytest.mark.anyio

#: Settings unlike the defaults, so a spelling that ignores them shows.
SETTINGS = Settings(default_queue="work", max_retries=7, backoff=2.5, job_timeout=9.0)


def add(a: int, b: int = 0) -> int:
    return a + b


class Echo(JobHandler):
    job_type = "echo"

    async def handle(self, job: Job) -> JobResult:
        return JobResult(success=True, value=job.kwargs)


# -- the signatures are the table ------------------------------------------------------------
def keywords(fn: Callable[..., Any]) -> list[tuple[str, object, object]]:
    """(name, annotation, default) of each keyword-only parameter of ``fn``."""
    params = inspect.signature(fn).parameters.values()
    return [(p.name, p.annotation, p.default) for p in params if p.kind is p.KEYWORD_ONLY]


#: The options ``JobService.create_job`` takes by position too (the ``JobCreator`` port's way).
PORT = ("priority",)


def table(names: tuple[str, ...], *, without: tuple[str, ...] = ()) -> list[tuple[str, str, None]]:
    return [(n, f"{OPTIONS[n].annotation} | None", None) for n in names if n not in without]


def test_the_table_splits_into_task_and_per_call_options() -> None:
    assert TASK_OPTIONS == (
        "queue", "priority", "max_retries", "backoff", "timeout", "on_failure", "retry_on",
        "dont_retry_on", "validate", "result_ttl", "fair_by", "dedup", "limits",
    )  # fmt: skip
    assert CALL_OPTIONS == (
        "queue", "priority", "max_retries", "timeout", "validate", "job_id", "metadata",
        "created_by", "expires", "result_ttl", "dedup", "limits", "depends_on",
    )  # fmt: skip
    assert [f for f in CallOptions.__dataclass_fields__] == list(CALL_OPTIONS)
    assert [f for f in TaskOptions.__dataclass_fields__] == ["name", *TASK_OPTIONS]


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        # on_failure: a handler's is its own method; a remote handle never runs its task
        (App.register, table(TASK_OPTIONS, without=("on_failure",))),
        (handler_task, table(TASK_OPTIONS, without=("on_failure",))),
        (App.remote, table(TASK_OPTIONS, without=("on_failure",))),
        (Task.options, table(CALL_OPTIONS)),
        # priority: by position or keyword, as the JobCreator port spells it (test below)
        (
            JobService.create_job,
            [("scheduled_at", "datetime | None", None), *table(CALL_OPTIONS, without=PORT)],
        ),
        (
            JobService.create_job_sync,
            [("scheduled_at", "datetime | None", None), *table(CALL_OPTIONS, without=PORT)],
        ),
    ],
    ids=["register", "handler_task", "remote", "options", "create_job", "create_job_sync"],
)
def test_each_spelling_takes_the_tables_options(
    spelling: Callable[..., Any], expected: list[tuple[str, str, None]]
) -> None:
    assert keywords(spelling) == expected


@pytest.mark.parametrize("spelling", [JobService.create_job, JobService.create_job_sync])
def test_create_job_takes_the_ports_options_by_position_with_the_tables_types(
    spelling: Callable[..., Any],
) -> None:
    params = inspect.signature(spelling).parameters
    assert list(params)[:5] == ["self", "job_type", "payload", "queue_name", *PORT]
    for name in PORT:
        p = params[name]
        assert p.kind is p.POSITIONAL_OR_KEYWORD
        assert (p.annotation, p.default) == (f"{OPTIONS[name].annotation} | None", None)
    assert (params["queue_name"].annotation, params["queue_name"].default) == (
        f"{OPTIONS['queue'].annotation} | None", None,
    )  # fmt: skip


def test_app_task_and_its_keyword_overload_take_the_tables_options() -> None:
    expected = [("name", "str | None", None), *table(TASK_OPTIONS)]
    assert keywords(App.task) == expected
    overloads = get_overloads(App.task)
    assert len(overloads) == 2
    assert keywords(overloads[1]) == expected


def test_every_spelling_resolves_the_same_defaults() -> None:
    app = App(MemoryBroker(), settings=SETTINGS)
    expected = resolve_options(SETTINGS, "t")
    assert (expected.queue, expected.priority, expected.max_retries, expected.timeout) == (
        "work", 0, 7, 9.0,
    )  # fmt: skip
    assert expected.backoff == Exponential(base=2.5)
    assert expected.validate is True

    def same(opts: TaskOptions) -> tuple[Any, ...]:
        return (opts.queue, opts.priority, opts.max_retries, opts.backoff, opts.validate)

    decorated = app.task(name="t")(add).opts
    bare = app.task(add).opts
    registered = app.register(Echo()).opts
    built = handler_task(app.producer, Echo()).opts
    remote = app.remote("elsewhere").opts
    for opts in (decorated, bare, registered, built, remote):
        assert same(opts) == same(expected)
    assert decorated.timeout == bare.timeout == registered.timeout == built.timeout == 9.0
    # A remote job's timeout stays unset, so the worker's own task timeout applies.
    assert remote.timeout is None
    assert decorated.on_failure is None
    assert registered.on_failure is not None  # the handler's method


# -- one error per bad value, from every spelling ---------------------------------------------
def spellings(app: App) -> dict[str, Callable[..., object]]:
    """Each spelling, called with the given options, by name; each refuses a bad one before
    storing anything."""
    task = app.task(name="known")(add)
    service = JobService(app)
    return {
        "task": lambda **kw: app.task(name="bad", **kw)(add),
        "register": lambda **kw: app.register(Echo(), **kw),
        "handler_task": lambda **kw: handler_task(app.producer, Echo(), **kw),
        "remote": lambda **kw: app.remote("x", **kw),
        "options": lambda **kw: task.options(**kw),
        "create_job": lambda **kw: service.create_job_sync("known", {"a": 1}, **kw),
    }


TAKES = {
    "task": TASK_OPTIONS,
    "register": tuple(n for n in TASK_OPTIONS if n != "on_failure"),
    "handler_task": tuple(n for n in TASK_OPTIONS if n != "on_failure"),
    "remote": tuple(n for n in TASK_OPTIONS if n != "on_failure"),
    "options": CALL_OPTIONS,
    "create_job": CALL_OPTIONS,
}

BAD = [
    ("queue", ""),
    ("queue", "  "),
    ("queue", 5),
    ("priority", "high"),
    ("priority", True),
    ("priority", 1.5),
    ("priority", 2**63),
    ("priority", -(2**63) - 1),
    ("max_retries", -1),
    ("max_retries", 1.5),
    ("max_retries", 2**31),
    ("backoff", -1),
    ("backoff", "fast"),
    ("backoff", True),
    ("backoff", math.inf),
    ("timeout", 0),
    ("timeout", "5"),
    ("timeout", math.nan),
    ("timeout", 1e300),
    ("on_failure", 5),
    ("retry_on", ValueError()),
    ("retry_on", [ValueError]),
    ("retry_on", (ValueError, "KeyError")),
    ("retry_on", int),
    ("retry_on", taskit.Retry),
    ("dont_retry_on", (taskit.Fail,)),
    ("dont_retry_on", "ValueError"),
    ("validate", "no"),
    ("validate", 0),
    ("job_id", ""),
    ("job_id", 12),
    ("metadata", ["a"]),
    ("created_by", 3),
    ("expires", 0),
    ("expires", "soon"),
    ("expires", math.inf),
    ("expires", datetime(2030, 1, 1)),  # naive
    ("result_ttl", -1),  # RQ's "for ever": refused, give a long TTL
    ("result_ttl", -0.5),
    ("result_ttl", math.nan),
    ("result_ttl", math.inf),
    ("result_ttl", 1e300),
    ("result_ttl", "1h"),
    ("result_ttl", True),
    ("result_ttl", timedelta(seconds=-1)),
    ("dedup", 60),
    ("dedup", "throttle"),
    ("limits", "exports"),  # a string is not a list of limits
    ("limits", [5]),
    ("limits", [taskit.Limit("a"), taskit.Limit("a").by("x")]),  # one limit named twice
    ("depends_on", "job-1"),  # a string is not a list of jobs
    ("depends_on", [5]),
    ("depends_on", [""]),
]


@pytest.mark.parametrize(("option", "value"), BAD, ids=[f"{o}={v!r}" for o, v in BAD])
def test_every_spelling_refuses_a_bad_option_with_the_same_error(option: str, value: Any) -> None:
    app = App(MemoryBroker(), settings=Settings())
    errors = set()
    tried = 0
    for name, spelling in spellings(app).items():
        if option not in TAKES[name]:
            continue
        tried += 1
        with pytest.raises((ValueError, TypeError)) as caught:
            spelling(**{option: value})
        errors.add((type(caught.value), str(caught.value)))
    assert tried >= (1 if option == "on_failure" else 2)  # on_failure: App.task alone
    assert len(errors) == 1, errors
    [(_, message)] = errors
    assert option in message
    assert set(app.tasks) == {"known"}  # nothing registered by a refused spelling
    assert app.run_sync(app.stats) == {}  # nothing enqueued
    app.close_sync()


# -- the disagreements of before, fixed --------------------------------------------------------
async def test_priority_and_validate_none_mean_the_default_everywhere() -> None:
    app = App(MemoryBroker(), settings=Settings())
    task = app.task(name="t", priority=None, validate=None)(add)
    assert (task.opts.priority, task.opts.validate) == (0, True)
    handler = app.register(Echo(), priority=None, validate=None)
    assert (handler.opts.priority, handler.opts.validate) == (0, True)
    job = await task.options(priority=None).enqueue(1)
    assert job.priority == 0


async def test_remote_takes_backoff_and_validate() -> None:
    app = App(MemoryBroker(), settings=Settings())
    assert app.remote("x", backoff=4.0).opts.backoff == Exponential(base=4.0)
    app.task(name="known")(add)
    loose = app.remote("known", validate=False)
    job = await loose.enqueue("not an int")  # the signature binds; the type is not checked
    assert job.args == ("not an int",)
    with pytest.raises(TypeError, match="'a'"):
        await app.remote("known").enqueue("not an int")


async def test_register_takes_validate() -> None:
    class Raw(JobHandler):
        job_type = "raw"

        async def handle(self, job: Job) -> JobResult:
            return JobResult(success=True)

    app = App(MemoryBroker(), settings=Settings())
    task = app.register(Raw(), validate=False)
    job = await task.enqueue(pair=(1, 2))  # a tuple would come back a list: unchecked here
    assert job.kwargs == {"pair": [1, 2]}


async def test_create_job_takes_every_per_call_option() -> None:
    app = App(MemoryBroker(), settings=Settings())
    app.task(name="math.add")(add)
    creator = uuid.uuid4()
    job = await JobService(app).create_job(
        "math.add", {"a": 1}, queue="q", priority=3, max_retries=0, timeout=2.0,
        validate=False, job_id="fixed", metadata={"k": 1}, created_by=creator,
    )  # fmt: skip
    assert (job.id, job.queue, job.priority, job.max_retries, job.timeout) == (
        "fixed", "q", 3, 0, 2.0,
    )  # fmt: skip
    assert (job.metadata, job.created_by) == ({"k": 1}, str(creator))
    loose = await JobService(app).create_job("math.add", {"a": "x"}, validate=False)
    assert loose.kwargs == {"a": "x"}


# -- a task without an App ---------------------------------------------------------------------
async def test_a_task_and_its_variants_work_over_a_producer_alone() -> None:
    settings = Settings()
    broker = MemoryBroker()
    producer = Producer(broker, settings)
    task = Task(producer, add, resolve_options(settings, "math.add", queue="q", priority=2))

    job = await task.enqueue(1, b=2)
    later = await task.options(priority=5, job_id="later").schedule(timedelta(seconds=60), 3)
    at = await task.schedule(datetime.now(UTC) + timedelta(hours=1), 4)
    many = await producer.submit([task.prepare(5), task.prepare(6)])

    assert (job.task, job.queue, job.priority, job.status) == (
        "math.add",
        "q",
        2,
        JobStatus.PENDING,
    )
    assert (job.args, job.kwargs) == ((1,), {"b": 2})
    assert (later.id, later.priority, later.status) == ("later", 5, JobStatus.SCHEDULED)
    assert at.status is JobStatus.SCHEDULED
    assert [j.args for j in many] == [(5,), (6,)]
    stats = (await broker.stats(["q"]))["q"]
    assert (stats.queued, stats.scheduled) == (3, 2)
    with pytest.raises(TypeError, match="missing a required argument"):
        await task.enqueue()  # type: ignore[call-arg]
    assert task(2, 3) == 5


def test_a_task_enqueues_without_a_loop_over_a_producer_alone() -> None:
    settings = Settings(max_payload_bytes=64)
    producer = Producer(MemoryBroker(), settings)
    task = Task(producer, add, resolve_options(settings, "math.add"))
    try:
        assert task.enqueue_sync(1).status is JobStatus.PENDING
        assert task.schedule_sync(30, 2).status is JobStatus.SCHEDULED
        with pytest.raises(taskit.PayloadTooLargeError):
            task.options(validate=False).enqueue_sync("x" * 100)  # type: ignore[arg-type]
        assert producer.run_sync(producer.broker.stats)["default"].queued == 1
    finally:
        producer.bridge.stop()
