"""The App: enqueue by name, remote handles, batches, the sync bridge, results and cancel."""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import anyio
import pytest

from taskit import (
    App,
    ConfigurationError,
    Job,
    JobNotFoundError,
    JobResult,
    JobStatus,
    MemoryBroker,
    QueueStats,
    ResultTimeoutError,
    SerializationError,
    Settings,
    UnknownTaskError,
)

pytestmark = pytest.mark.anyio

QUEUES = ["default", "other"]


def make_app(**settings: Any) -> App:
    return App(MemoryBroker(), settings=Settings(**settings))


def add(a: int, b: int = 0) -> int:
    return a + b


async def assert_untouched(app: App) -> None:
    stats = await app.stats()
    assert all(s == QueueStats() for s in stats.values()), stats
    assert await app.broker.reserve(QUEUES, count=10, lease=30.0, timeout=0) == []


# -- construction -----------------------------------------------------------------------------
def test_app_takes_a_url_a_broker_or_the_setting() -> None:
    broker = MemoryBroker()
    assert App(broker).broker is broker
    assert isinstance(App("memory://").broker, MemoryBroker)
    assert isinstance(App(settings=Settings(broker_url="memory://")).broker, MemoryBroker)
    with pytest.raises(ConfigurationError, match="scheme"):
        App("nats://localhost")
    with pytest.raises(TypeError, match="URL or a Broker"):
        App(42)  # type: ignore[arg-type]


def test_each_app_has_its_own_registry() -> None:
    one, two = make_app(), make_app()
    one.task(add)
    assert add.__qualname__ not in str(list(two.tasks))
    two.task(add)  # no clash: registries are per App
    assert list(one.tasks) == list(two.tasks)


# -- enqueue by name and remote handles -------------------------------------------------------
async def test_enqueue_by_name() -> None:
    app = make_app()
    task = app.task(name="math.add")(add)

    job = await app.enqueue("math.add", 2, b=3)

    assert job.task == "math.add"
    assert job.queue == task.opts.queue
    assert (job.args, job.kwargs) == ((2,), {"b": 3})
    assert (await app.stats())["default"].queued == 1


async def test_enqueue_by_name_checks_the_signature() -> None:
    app = make_app()
    app.task(name="math.add")(add)

    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        await app.enqueue("math.add", 1, c=2)
    await assert_untouched(app)


async def test_unknown_name_is_an_error_and_enqueues_nothing() -> None:
    app = make_app()
    app.task(add)

    with pytest.raises(UnknownTaskError, match=r"no\.such\.task") as caught:
        await app.enqueue("no.such.task", 1)
    assert isinstance(caught.value, ValueError)
    assert caught.value.name == "no.such.task"
    with pytest.raises(UnknownTaskError):
        app.get_task("no.such.task")
    await assert_untouched(app)


async def test_remote_enqueues_a_task_this_process_does_not_know() -> None:
    app = make_app()

    handle = app.remote("billing.charge", queue="other", max_retries=1, priority=4, timeout=3.0)
    job = await handle.enqueue(7, currency="EUR")

    assert "billing.charge" not in app.tasks
    assert (job.task, job.queue, job.max_retries, job.priority, job.timeout) == (
        "billing.charge",
        "other",
        1,
        4,
        3.0,
    )
    assert (job.args, job.kwargs) == ((7,), {"currency": "EUR"})
    assert (await app.stats(["other"]))["other"].queued == 1
    with pytest.raises(TypeError, match="not registered here"):
        handle(7)


async def test_remote_of_a_known_task_keeps_the_signature_check_and_honours_options() -> None:
    app = make_app()
    app.task(name="math.add", queue="default", priority=1)(add)

    with pytest.raises(TypeError, match="missing a required argument"):
        await app.remote("math.add").enqueue()
    job = await app.remote("math.add", queue="other", priority=5).enqueue(1)

    assert (job.queue, job.priority) == ("other", 5)
    assert (await app.stats(["other"]))["other"].queued == 1


@pytest.mark.parametrize(
    ("name", "options", "error"),
    [
        ("", {}, ValueError),
        ("x", {"queue": ""}, ValueError),
        ("x", {"max_retries": -1}, ValueError),
        ("x", {"timeout": 0}, ValueError),
        ("x", {"priority": "high"}, TypeError),
    ],
)
def test_remote_rejects_bad_options(name: str, options: dict[str, Any], error: type) -> None:
    app = make_app()
    with pytest.raises(error):
        app.remote(name, **options)


async def test_remote_unencodable_argument_enqueues_nothing() -> None:
    app = make_app()
    with pytest.raises(SerializationError, match="positional argument 0"):
        await app.remote("x.y").enqueue(object())
    await assert_untouched(app)


# -- batches ----------------------------------------------------------------------------------
async def test_enqueue_many_enqueues_every_prepared_job() -> None:
    app = make_app()
    adder = app.task(add)

    @app.task
    def shout(text: str) -> str:
        return text.upper()

    jobs = [adder.prepare(i) for i in range(3)]
    jobs.append(shout.options(queue="other").prepare("hi"))

    stored = await app.enqueue_many(jobs)

    assert [j.id for j in stored] == [j.id for j in jobs]
    assert all(j.status is JobStatus.PENDING for j in stored)
    stats = await app.stats(QUEUES)
    assert (stats["default"].queued, stats["other"].queued) == (3, 1)
    leases = await app.broker.reserve(["default"], count=10, lease=30.0, timeout=0)
    assert [lease.job.args for lease in leases] == [(0,), (1,), (2,)]


async def test_a_bad_job_in_a_batch_leaves_the_broker_unchanged() -> None:
    app = make_app()
    adder = app.task(add)
    good = adder.prepare(1)
    bad = adder.options(metadata={"handle": object()}).prepare(2)

    with pytest.raises(SerializationError):
        await app.enqueue_many([good, bad])
    await assert_untouched(app)

    with pytest.raises(TypeError, match="expected Job objects"):
        await app.enqueue_many([good, "not a job"])  # type: ignore[list-item]
    await assert_untouched(app)


async def test_enqueue_many_of_nothing_is_nothing() -> None:
    app = make_app()
    assert await app.enqueue_many([]) == []
    await assert_untouched(app)


# -- results, get, cancel, stats --------------------------------------------------------------
async def test_result_waits_for_the_job() -> None:
    app = make_app()
    adder = app.task(add)
    job = await adder.enqueue(2, b=3)

    async with app.worker(concurrency=1):
        result = await app.result(job.id, timeout=5)

    assert result.success is True
    assert result.value == 5
    assert result.duration is not None
    assert result.duration >= 0


async def test_result_times_out_when_the_job_does_not_finish() -> None:
    app = make_app()
    job = await app.task(add).enqueue(1)  # no worker: it never finishes

    with pytest.raises(ResultTimeoutError, match=job.id):
        await app.result(job.id, timeout=0.05)
    assert isinstance(ResultTimeoutError("x"), TimeoutError)


async def test_result_of_an_unknown_job_is_not_found() -> None:
    app = make_app()
    with pytest.raises(JobNotFoundError, match="nope") as caught:
        await app.result("nope", timeout=1)
    assert caught.value.job_id == "nope"
    assert isinstance(caught.value, LookupError)
    assert await app.get_job("nope") is None


async def test_cancel_a_queued_job() -> None:
    app = make_app()
    job = await app.task(add).enqueue(1)

    assert await app.cancel(job.id) is True
    cancelled = await app.get_job(job.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED
    assert await app.cancel(job.id) is False  # already finished
    assert await app.cancel("unknown") is False
    result = await app.result(job.id, timeout=1)
    assert result == JobResult(success=False, error="job was cancelled", error_type="Cancelled")
    assert await app.broker.reserve(QUEUES, count=10, lease=30.0, timeout=0) == []


async def test_stats_per_queue() -> None:
    app = make_app()
    adder = app.task(add)
    await adder.enqueue(1)
    await adder.options(queue="other").enqueue(1)
    await adder.options(queue="other").schedule(60, 1)

    stats = await app.stats(QUEUES)

    assert stats["default"] == QueueStats(queued=1)
    assert stats["other"] == QueueStats(queued=1, scheduled=1)


# -- the sync bridge --------------------------------------------------------------------------
def test_enqueue_sync_from_plain_code() -> None:
    app = make_app()
    adder = app.task(add)
    try:
        job = adder.enqueue_sync(1, b=2)
        later = adder.options(queue="other").schedule_sync(60, 3)
        many = app.enqueue_many_sync([adder.prepare(4), adder.prepare(5)])

        assert isinstance(job, Job)
        assert job.status is JobStatus.PENDING
        assert later.status is JobStatus.SCHEDULED
        assert len(many) == 2
        stored = app.run_sync(app.get_job, job.id)
        assert stored is not None
        assert stored.kwargs == {"b": 2}
        stats = app.run_sync(app.stats, QUEUES)
        assert (stats["default"].queued, stats["other"].scheduled) == (3, 1)
        with pytest.raises(TypeError, match="missing a required argument"):
            adder.enqueue_sync()  # type: ignore[call-arg]
    finally:
        app.close_sync()


async def test_enqueue_sync_from_async_code_is_an_error() -> None:
    app = make_app()
    adder = app.task(add)

    with pytest.raises(RuntimeError, match="await the async method"):
        adder.enqueue_sync(1)
    with pytest.raises(RuntimeError, match="await the async method"):
        adder.schedule_sync(5, 1)
    with pytest.raises(RuntimeError, match="await the async method"):
        app.enqueue_many_sync([adder.prepare(1)])
    await assert_untouched(app)
    await app.close()


@pytest.mark.parametrize("worker_backend", ["asyncio", "trio"])
def test_a_worker_in_another_thread_runs_a_job_enqueued_with_enqueue_sync(
    worker_backend: str,
) -> None:
    app = make_app()
    ran_in: list[str] = []

    @app.task
    async def record(word: str) -> str:
        ran_in.append(threading.current_thread().name)
        return word * 2

    worker_up = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []

    async def serve() -> None:
        async with app.worker(concurrency=2):
            worker_up.set()
            await anyio.to_thread.run_sync(stop.wait)

    def thread_main() -> None:
        try:
            anyio.run(serve, backend=worker_backend)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            worker_up.set()

    thread = threading.Thread(target=thread_main, name="worker-thread")
    thread.start()
    try:
        assert worker_up.wait(5)
        job = record.enqueue_sync("ab")
        result = app.run_sync(functools.partial(app.result, job.id, timeout=5))
    finally:
        stop.set()
        thread.join(10)
        app.close_sync()

    assert not failures
    assert not thread.is_alive()
    assert result.value == "abab"
    assert ran_in == ["worker-thread"]


async def test_handlers_can_enqueue_follow_up_jobs() -> None:
    """An async handler awaits ``enqueue``; a sync one (in a worker thread, without an event
    loop of its own) uses ``enqueue_sync``, which goes through the App's own loop thread."""
    app = make_app()
    seen: list[str] = []

    @app.task
    def sync_step(n: int) -> None:
        seen.append(f"sync {n}")
        if n < 2:
            sync_step.enqueue_sync(n + 1)
        else:
            async_step.enqueue_sync(0)

    @app.task
    async def async_step(n: int) -> None:
        seen.append(f"async {n}")
        if n < 2:
            await async_step.enqueue(n + 1)

    await sync_step.enqueue(0)
    with anyio.fail_after(5):
        stats = await app.worker(concurrency=2).run(burst=True)
    await app.close()

    assert seen == ["sync 0", "sync 1", "sync 2", "async 0", "async 1", "async 2"]
    assert stats.completed == 6


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"timeout": -1}, "timeout must be a finite number of seconds >= 0"),
        ({"timeout": math.nan}, "timeout must be"),
        ({"timeout": True}, "timeout must be"),
        ({"poll_interval": 0}, "poll_interval must be a finite number of seconds > 0"),
        ({"poll_interval": math.inf}, "poll_interval must be"),
        ({"poll_interval": "1"}, "poll_interval must be"),
    ],
)
async def test_result_checks_its_numeric_arguments_first(
    options: dict[str, Any], match: str
) -> None:
    app = App("memory://", settings=Settings())
    with pytest.raises(ValueError, match=match):
        await app.result("no-such-job", **options)


def test_app_refuses_settings_that_are_not_settings() -> None:
    with pytest.raises(TypeError, match="settings must be a Settings"):
        App("memory://", settings={"concurrency": 2})  # type: ignore[arg-type]
