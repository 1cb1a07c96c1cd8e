"""Dedup windows from the task's side: the option on every spelling, keys from an argument or a
function of the arguments, bad keys refused at enqueue, what ``enqueue`` answers, events, and
unique ids (unique until finished) beside a throttle (unique for a period)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from taskit import App, Debounce, JobStatus, KeptJob, MemoryBroker, Throttle
from taskit.broker.redis import RedisBroker
from taskit.clock import FakeClock
from taskit.dedup import Dedup
from taskit.events import EventKind, JobEvent
from taskit.handlers import JobHandler
from taskit.job import Job, JobResult

pytestmark = pytest.mark.anyio


def make_app(clock: FakeClock | None = None) -> App:
    return App(MemoryBroker(clock=clock or FakeClock()))


async def test_a_throttled_task_keeps_one_job_per_key_and_window() -> None:
    clock = FakeClock()
    app = make_app(clock)

    @app.task(dedup=Throttle(60, key="customer_id"))
    def report(customer_id: str, day: str = "today") -> None: ...

    first = await report.enqueue("c1")
    again = await report.enqueue("c1", day="yesterday")
    other = await report.enqueue("c2")

    assert first.dedup == Dedup("throttle", f"{report.name}\0c1", 60.0)
    assert isinstance(again, KeptJob)
    assert again.duplicate
    assert (again.id, again.args) == (first.id, ("c1",))
    assert not first.duplicate
    assert not other.duplicate
    clock.advance(61)
    assert not (await report.enqueue("c1")).duplicate


async def test_a_key_may_be_a_function_of_the_arguments_or_the_task_alone() -> None:
    app = make_app()

    @app.task(dedup=Debounce(5, key=lambda url, **_: url.split("/")[2]))
    def fetch(url: str, retries: int = 1) -> None: ...

    @app.task(dedup=Throttle(5))
    def rebuild() -> None: ...

    job = await fetch.enqueue("https://example.com/a")
    same_host = await fetch.enqueue(url="https://example.com/b", retries=2)
    assert job.dedup is not None
    assert job.dedup.key == f"{fetch.name}\0example.com"
    assert same_host.duplicate
    assert same_host.kwargs == {"url": "https://example.com/b", "retries": 2}  # the last wins
    assert (await rebuild.enqueue()).dedup == Dedup("throttle", rebuild.name, 5.0)
    assert (await rebuild.enqueue()).duplicate


async def test_a_call_may_set_its_own_window() -> None:
    app = make_app()

    @app.task
    def ping(host: str) -> None: ...

    throttled = ping.options(dedup=Throttle(30, key="host"))
    first = await throttled.enqueue("a")
    assert (await throttled.enqueue("a")).id == first.id
    assert not (await ping.enqueue("a")).duplicate  # the task itself has none


async def test_a_task_without_dedup_carries_none() -> None:
    app = make_app()

    @app.task
    def plain(x: int) -> None: ...

    assert (await plain.enqueue(1)).dedup is None


@pytest.mark.parametrize(
    ("policy", "error", "message"),
    [
        (Throttle(5, key="missing"), TypeError, "dedup key 'missing' is not an argument"),
        (Throttle(5, key=lambda **_: 1.5), TypeError, "must be a str or an int, got float"),
        (Throttle(5, key=lambda **_: True), TypeError, "must be a str or an int, got bool"),
        (Throttle(5, key=lambda **_: "a\0b"), ValueError, "may not hold NUL"),
        (Throttle(5, key=lambda **_: "x" * 2000), ValueError, "dedup key too long"),
    ],
)
async def test_a_bad_key_is_refused_at_enqueue_and_nothing_is_stored(
    policy: Throttle, error: type[Exception], message: str
) -> None:
    app = make_app()

    @app.task(dedup=policy)
    def task(x: int) -> None: ...

    with pytest.raises(error, match=message):
        await task.enqueue(1)
    assert await app.stats() == {}


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Throttle(0), ValueError, "window must be seconds above 0"),
        (lambda: Debounce(float("inf")), ValueError, "window must be seconds above 0"),
        (lambda: Throttle(True), ValueError, "window must be seconds above 0"),
        (lambda: Throttle(5, key=""), ValueError, "must name an argument"),
        (lambda: Debounce(5, key=3), TypeError, "an argument's name, a function"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_window_or_key_source_is_refused_when_made(
    make: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


def test_the_option_takes_only_a_throttle_or_a_debounce() -> None:
    app = make_app()
    with pytest.raises(TypeError, match="dedup must be Throttle"):
        app.task(dedup=60)(lambda: None)  # type: ignore[call-overload]


async def test_a_remote_task_keys_by_keyword_arguments() -> None:
    app = make_app()
    remote = app.remote("elsewhere.sync", dedup=Throttle(10, key="account"))

    first = await remote.enqueue(account="a1")
    assert (await remote.enqueue(account="a1")).id == first.id
    with pytest.raises(TypeError, match="dedup key 'account' is not an argument"):
        await remote.enqueue("a1")  # by position: a remote task has no signature to name it


async def test_a_handler_task_keys_by_its_payload() -> None:
    app = make_app()

    class Sync(JobHandler):
        job_type = "sync.account"

        async def handle(self, job: Job) -> JobResult:
            return JobResult(success=True)

    task = app.register(Sync(), dedup=Debounce(10, key="account"))
    first = await task.enqueue(account="a1", full=False)
    again = await task.enqueue(account="a1", full=True)
    assert again.id == first.id
    assert again.kwargs == {"account": "a1", "full": True}


async def test_a_duplicate_is_no_new_job_for_the_events() -> None:
    app = make_app()
    created: list[str] = []

    @app.on(EventKind.CREATED)
    def on_created(event: JobEvent) -> None:
        created.append(event.job_id)

    @app.task(dedup=Debounce(10, key="x"))
    def task(x: int, y: int = 0) -> None: ...

    first = await task.enqueue(1)
    await task.enqueue(1, y=2)
    assert created == [first.id]


async def test_unique_until_finished_is_the_job_id_and_for_a_period_a_throttle() -> None:
    """A unique id is kept while its job waits or runs, then free again once it finished; a
    throttle keeps its key for its window, finished or not."""
    clock = FakeClock()
    app = make_app(clock)

    @app.task(dedup=Throttle(3600, key="day"))
    def nightly(day: str) -> None: ...

    @app.task
    def invoice(order: int) -> None: ...

    first = await invoice.options(job_id="invoice-7").enqueue(7)
    again = await invoice.options(job_id="invoice-7").enqueue(7)
    assert again.duplicate
    assert again.created_at == first.created_at  # the same job, kept as it was
    await app.worker().run(burst=True)
    after = await invoice.options(job_id="invoice-7").enqueue(7)
    assert not after.duplicate  # finished: the id is free again, a new run of it
    assert (after.id, after.status) == ("invoice-7", JobStatus.PENDING)

    report = await nightly.enqueue("2026-11-30")
    await app.worker().run(burst=True)
    again = await nightly.enqueue("2026-11-30")
    assert again.duplicate
    assert (again.id, again.status) == (report.id, JobStatus.COMPLETED)


# -- the Redis broker's blocking path (enqueue_sync) ----------------------------------------------
@pytest.fixture
def redis_app(redis_url: str) -> Iterator[App]:
    prefix = f"dedup-{uuid.uuid4().hex[:10]}"
    app = App(RedisBroker(redis_url, prefix=prefix))
    yield app
    app.close_sync()
    client = redis.Redis.from_url(redis_url)
    doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
    if doomed:
        client.delete(*doomed)
    client.close()


@pytest.mark.redis
def test_enqueue_sync_answers_a_kept_job_that_has_finished(redis_app: App) -> None:
    @redis_app.task(name="dedup.report", dedup=Throttle(3600, key="day"))
    def report(day: str) -> str:
        return day

    first = report.enqueue_sync("monday")
    assert not first.duplicate
    redis_app.run_sync(functools.partial(redis_app.worker().run, burst=True))

    again = report.enqueue_sync("monday")
    assert again.duplicate
    assert (again.id, again.status, again.args) == (first.id, JobStatus.COMPLETED, ("monday",))
