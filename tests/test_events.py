"""Lifecycle events on the memory broker: what is emitted when, what each event carries, and
that subscribers (sync, async, raising, slow) never change what happens to a job."""

from __future__ import annotations

import itertools
import logging

import anyio
import anyio.lowlevel
import pytest

import taskit.worker
from taskit import App, Fail, MemoryBroker, Retry
from taskit.clock import FakeClock
from taskit.events import EventKind, Events, JobEvent, WorkerEvents
from taskit.job import JobStatus, Outcome, OutcomeKind

pytestmark = pytest.mark.anyio


def make_app() -> tuple[App, list[JobEvent]]:
    app = App(MemoryBroker())
    seen: list[JobEvent] = []
    app.on()(seen.append)

    @app.task(name="ok")
    async def ok(x: int) -> int:
        return x * 2

    @app.task(name="nope")
    def nope() -> None:
        raise Fail("not today")

    @app.task(name="flaky", max_retries=1, backoff=0.0)
    async def flaky() -> None:
        raise Retry(delay=0)

    return app, seen


def kinds(events: list[JobEvent], job_id: str) -> list[str]:
    return [e.kind.value for e in events if e.job_id == job_id]


async def test_a_completed_job_emits_created_started_completed() -> None:
    app, seen = make_app()
    job = await app.get_task("ok").options(created_by="ada", metadata={"trace": "t1"}).enqueue(21)
    await app.worker(name="w1").run(burst=True)
    assert kinds(seen, job.id) == ["created", "started", "completed"]
    created, started, completed = seen
    assert (created.task, created.queue, created.attempt, created.worker) == (
        "ok",
        "default",
        0,
        None,
    )
    assert created.created_by == "ada"
    assert dict(completed.metadata) == {"trace": "t1"}
    assert started.attempt == completed.attempt == 1
    assert started.worker == completed.worker == "w1"
    assert completed.duration is not None
    assert 0 <= completed.duration < 5
    assert completed.started_at is not None
    assert completed.created_at == job.created_at
    assert completed.at >= completed.started_at
    data = completed.to_builtins()
    assert data["kind"] == "completed"
    assert data["metadata"] == {"trace": "t1"}
    assert isinstance(data["at"], str)


async def test_failure_retry_and_dead_letter_events_carry_the_error() -> None:
    app, seen = make_app()
    failing = await app.enqueue("nope")
    flaky = await app.enqueue("flaky")
    await app.worker().run(burst=True)
    assert kinds(seen, failing.id) == ["created", "started", "failed"]
    failed = [e for e in seen if e.job_id == failing.id][2]
    assert (failed.error, failed.error_type) == ("not today", "Fail")
    assert kinds(seen, flaky.id) == ["created", "started", "retried", "started", "dead_lettered"]
    retried = next(e for e in seen if e.kind is EventKind.RETRIED)
    assert retried.delay == 0
    assert retried.error_type == "Retry"
    assert [e.attempt for e in seen if e.job_id == flaky.id] == [0, 1, 1, 2, 2]


async def test_cancel_and_requeue_events() -> None:
    app, seen = make_app()
    job = await app.get_task("ok").schedule(60, 1)
    assert await app.cancel(job.id)
    assert kinds(seen, job.id) == ["created", "cancelled"]
    assert not await app.cancel(job.id)  # already finished: nothing more
    assert kinds(seen, job.id) == ["created", "cancelled"]


async def test_a_unique_job_already_waiting_is_not_created_again() -> None:
    app, seen = make_app()
    ok = app.get_task("ok")
    await ok.options(job_id="same").enqueue(1)
    await ok.options(job_id="same").enqueue(2)
    assert kinds(seen, "same") == ["created"]


async def test_subscriptions_by_kind_sync_and_async() -> None:
    app, _ = make_app()
    done: list[str] = []

    @app.on(EventKind.COMPLETED, "failed")
    async def on_end(event: JobEvent) -> None:
        await anyio.lowlevel.checkpoint()
        done.append(f"{event.task}:{event.kind}")

    await app.enqueue("ok", 1)
    await app.enqueue("nope")
    await app.worker(concurrency=1).run(burst=True)
    assert done == ["ok:completed", "nope:failed"]
    app.events.unsubscribe(on_end)
    await app.enqueue("ok", 2)
    await app.worker().run(burst=True)
    assert len(done) == 2


async def test_a_raising_subscriber_is_logged_and_the_job_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, seen = make_app()

    @app.on()
    def broken(event: JobEvent) -> None:
        raise RuntimeError("audit store is down")

    job = await app.enqueue("ok", 4)
    stats = await app.worker().run(burst=True)
    assert stats.completed == 1
    done = await app.get_job(job.id)
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert kinds(seen, job.id) == ["created", "started", "completed"]  # the others still ran
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    assert "raised on completed of job" in errors[-1].getMessage()
    assert "audit store is down" in caplog.text


async def test_a_slow_subscriber_does_not_hold_up_jobs() -> None:
    app, _ = make_app()
    gate = anyio.Event()
    delivered: list[str] = []

    @app.on(EventKind.STARTED)
    async def slow(event: JobEvent) -> None:
        await gate.wait()
        delivered.append(event.job_id)

    for i in range(3):
        await app.enqueue("ok", i)
    async with anyio.create_task_group() as tg:
        worker = app.worker(concurrency=1)
        tg.start_soon(worker.run)
        with anyio.fail_after(5):
            for _ in itertools.count():  # poll: the broker has no "jobs done" notification
                if (await app.stats())["default"].completed == 3:
                    break
                await anyio.sleep(0.01)
        assert delivered == []  # all three ran while their events waited
        gate.set()
        worker.stop()
    assert len(delivered) == 3  # and a stopping worker delivered them


def test_unknown_kind_and_non_callable_are_rejected() -> None:
    events = Events()
    with pytest.raises(ValueError, match="unknown event kind"):
        events.subscribe(print, ["finished"])
    with pytest.raises(TypeError, match="must be callable"):
        events.subscribe("print")  # type: ignore[type-var]
    assert not events


async def test_without_subscribers_the_worker_builds_no_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = App(MemoryBroker())

    @app.task(name="t")
    def t() -> None: ...

    def no_events(*args: object) -> None:
        raise AssertionError("a worker without subscribers built its events")

    monkeypatch.setattr(taskit.worker, "WorkerEvents", no_events)
    await app.enqueue("t")
    worker = app.worker()
    assert (await worker.run(burst=True)).completed == 1
    assert (worker.settling_count, worker.running_count) == (0, 0)


async def test_reclaimed_leases_become_retried_or_dead_lettered_events() -> None:
    clock = FakeClock()
    app = App(MemoryBroker(clock=clock))
    seen: list[JobEvent] = []
    app.on(EventKind.RETRIED, EventKind.DEAD_LETTERED)(seen.append)

    @app.task(name="t")
    def t() -> None: ...

    job = await app.enqueue("t")
    [lease] = await app.broker.reserve(["default"], count=1, lease=1.0, timeout=0)
    outcome = Outcome(job_id=job.id, token=lease.token, kind=OutcomeKind.RETRY, delay=3.0)
    emitter = WorkerEvents(app.events, "reaper")
    emitter.reclaimed([lease, lease], [outcome, outcome], [True, False])
    async with anyio.create_task_group() as tg:
        tg.start_soon(emitter.run)
        await emitter.close()
    assert [(e.kind, e.delay, e.worker) for e in seen] == [(EventKind.RETRIED, 3.0, "reaper")]
    emitter.started(lease.job)  # after close: dropped, not an error


async def test_events_from_the_reaper_of_a_worker() -> None:
    clock = FakeClock()
    app = App(MemoryBroker(clock=clock))
    seen: list[JobEvent] = []
    app.on(EventKind.RETRIED)(seen.append)

    @app.task(name="t", max_retries=2, backoff=0.0)
    def t() -> None: ...

    await app.enqueue("t")
    await app.broker.reserve(["default"], count=1, lease=1.0, timeout=0)  # a worker that dies
    clock.advance(2.0)
    worker = app.worker()
    with anyio.fail_after(10):
        await worker.run(burst=True)
    assert [e.error_type for e in seen] == ["TimeoutError"]


async def test_requeueing_dead_letters_through_the_app_emits_requeued() -> None:
    app, seen = make_app()
    doomed = await app.get_task("flaky").enqueue()
    await app.worker().run(burst=True)
    assert (await app.broker.get(doomed.id)).status is JobStatus.DEAD_LETTER  # type: ignore[union-attr]
    seen.clear()

    assert await app.requeue_dead("default") == 1

    assert kinds(seen, doomed.id) == ["requeued"]
    assert seen[0].attempt == 0
    again = await app.get_job(doomed.id)
    assert again is not None
    assert again.status is JobStatus.PENDING
    assert await app.requeue_dead("default", [doomed.id]) == 0  # no longer a dead letter
