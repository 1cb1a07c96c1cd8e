"""The worker registry on the memory broker: a running worker's record, its renewal, its
withdrawal on a clean stop and its expiry when the worker stops beating."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import anyio
import pytest

from taskit import App, MemoryBroker, Settings, presence
from taskit.clock import FakeClock
from taskit.presence import MAX_JOBS, RunningJob
from taskit.registry import TTL_INTERVALS, WorkerInfo, live_workers

pytestmark = pytest.mark.anyio


def make_app(clock: FakeClock | None = None) -> App:
    app = App(MemoryBroker(clock=clock), settings=Settings(heartbeat_interval=0.05))

    @app.task(name="nap")
    async def nap(seconds: float) -> None:
        await anyio.sleep(seconds)

    return app


async def poll(app: App, check: Callable[[WorkerInfo], bool]) -> WorkerInfo:
    """The only live worker's record, once ``check`` accepts it (records change every beat)."""
    with anyio.fail_after(5):
        for _ in itertools.count():
            found = await live_workers(app.broker)
            if found and check(found[0]):
                return found[0]
            await anyio.sleep(0.01)
    raise AssertionError("unreachable")


async def test_a_running_worker_is_registered_and_withdrawn_when_it_stops() -> None:
    app = make_app()
    job = await app.enqueue("nap", 0.3)
    async with anyio.create_task_group() as tg:
        worker = app.worker(queues=["default", "low"], concurrency=3, name="w-1")
        tg.start_soon(worker.run)
        info = await poll(app, lambda w: w.running == 1)
        assert (info.name, info.host, info.pid) == ("w-1", socket.gethostname(), os.getpid())
        assert (info.queues, info.concurrency, info.jobs_done) == (["default", "low"], 3, 0)
        assert info.beat_at >= info.started_at
        (running,) = info.jobs  # what it runs, and since when (the Workers page shows it)
        assert (running.id, running.task) == (job.id, "nap")
        assert running.started_at is not None
        assert running.started_at >= job.created_at
        done = await poll(app, lambda w: w.jobs_done == 1)
        assert done.jobs == []
        worker.stop()
    assert await live_workers(app.broker) == []


async def test_a_record_expires_after_three_missed_beats() -> None:
    clock = FakeClock()
    app = make_app(clock)
    await app.broker.announce("gone", b"{}", ttl=0.05 * TTL_INTERVALS)
    clock.advance(0.05 * TTL_INTERVALS - 0.001)
    assert list(await app.broker.live()) == ["gone"]
    clock.advance(0.002)
    assert await app.broker.live() == {}


async def test_an_undecodable_record_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    await app.broker.announce("junk", b"not json", ttl=10)
    assert await live_workers(app.broker) == []
    assert "worker record 'junk' does not decode" in caplog.text


def test_a_record_lists_at_most_the_newest_max_jobs() -> None:
    class Wide:
        name, queues, concurrency, running_count, jobs_done = "wide", ["q"], 500, 150, 0

        def running_jobs(self) -> list[RunningJob]:
            return [RunningJob(id=str(i), task="t") for i in range(150)]

    info = presence._info(Wide(), datetime.now(UTC))
    assert [j.id for j in info.jobs] == [str(i) for i in range(150 - MAX_JOBS, 150)]
    assert info.running == 150
