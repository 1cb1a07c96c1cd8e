"""Pausing queues through the App: ``App.pause`` / ``App.resume``, the paused gauge, a reserve
blocked on a paused queue that does not spin, and a real Redis worker paused mid-drain (no job
starts; the running ones finish) then resumed (the rest drain at once). Waits on events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
import redis

from taskit import App, MemoryBroker
from taskit.broker.redis import RedisBroker
from taskit.events import EventKind, JobEvent
from taskit.job import Lease
from taskit.metrics import Metrics
from taskit.worker import BLOCK_SECONDS

pytestmark = pytest.mark.anyio

WAIT = 10.0


class CountingBroker(MemoryBroker):
    """Counts how often a reserve looks at the queues (each look takes the lock once)."""

    looks = 0

    def _take(self, queues: Sequence[str], count: int, lease: float, now: float) -> list[Lease]:
        self.looks += 1
        return super()._take(queues, count, lease, now)


async def test_app_pause_and_resume_answer_whether_anything_changed() -> None:
    app = App(MemoryBroker())
    assert await app.pause("reports") is True
    assert await app.pause("reports") is False
    assert await app.broker.paused_queues() == {"reports"}
    assert await app.resume("reports") is True
    assert await app.resume("reports") is False
    assert await app.broker.paused_queues() == frozenset()


async def test_the_paused_gauge_shows_each_queue() -> None:
    app = App(MemoryBroker())

    @app.task(queue="reports")
    def report() -> None: ...

    metrics = Metrics(app)
    await report.enqueue()
    await app.pause("reports")
    await app.pause("empty")
    await metrics.refresh()
    assert metrics.registry.get_sample_value("taskit_queue_paused", {"queue": "reports"}) == 1
    assert metrics.registry.get_sample_value("taskit_queue_paused", {"queue": "empty"}) == 1
    await app.resume("reports")
    await metrics.refresh()
    assert metrics.registry.get_sample_value("taskit_queue_paused", {"queue": "reports"}) == 0


async def test_a_reserve_blocked_on_a_paused_queue_with_ready_jobs_does_not_spin() -> None:
    app = App(broker := CountingBroker())

    @app.task(queue="q")
    def job() -> None: ...

    await job.enqueue()
    await app.pause("q")
    assert await broker.reserve(["q"], count=1, lease=30.0, timeout=0.3) == []
    assert broker.looks <= 2  # once on entry, at most once more: never a loop


# -- a real Redis worker -------------------------------------------------------------------------
@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = f"pause-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    doomed = list(client.scan_iter(match="{" + name + "}*", count=500))
    if doomed:
        client.delete(*doomed)
    client.close()


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_worker_paused_mid_drain_finishes_its_jobs_then_waits_until_resumed(
    redis_url: str, prefix: str, anyio_backend: str
) -> None:
    app = App(RedisBroker(redis_url, prefix=prefix))
    started: list[int] = []
    done: list[str] = []
    two_started, two_done, all_done, third = (anyio.Event() for _ in range(4))
    gate = anyio.Event()

    @app.task(name="pause.step", queue="drain")
    async def step(n: int) -> None:
        started.append(n)
        if len(started) == 2:
            two_started.set()
        if len(started) == 3:
            third.set()
        if n < 2:
            await gate.wait()  # the first two run while the queue is paused

    @app.on(EventKind.COMPLETED)
    def on_done(event: JobEvent) -> None:
        done.append(event.job_id)
        if len(done) == 2:
            two_done.set()
        if len(done) == 12:
            all_done.set()

    await app.enqueue_many([step.prepare(n) for n in range(12)])
    async with app.worker(queues=["drain"], concurrency=2):
        with anyio.fail_after(WAIT):
            await two_started.wait()
            assert await app.pause("drain")
            gate.set()  # the running ones finish...
            await two_done.wait()
            await anyio.wait_all_tasks_blocked()  # ...and the worker waits: nothing starts
            assert sorted(started) == [0, 1]
            stats = (await app.stats(["drain"]))["drain"]
            assert (stats.queued, stats.running) == (10, 0)

            resumed = anyio.current_time()
            assert await app.resume("drain")
            await third.wait()
            woke_after = anyio.current_time() - resumed
            await all_done.wait()

    assert woke_after < BLOCK_SECONDS / 2  # woken by the resume, not by its wait running out
    assert sorted(started) == list(range(12))
    await app.close()
