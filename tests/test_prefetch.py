"""Prefetch: a worker holds up to ``prefetch`` reserved jobs waiting beyond its idle runners.

Held jobs are the worker's as much as running ones: the heartbeat keeps their leases, a cancel or
a lost lease takes them out unrun, a stop hands them back unrun (attempt refunded), burst mode
waits for them, and the presence record does not list them as running. Memory broker; where a
lease must really pass, the visibility timeout is a fraction of a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from taskit import App, ConfigurationError, Job, JobStatus, Settings, Worker
from taskit.clock import FakeClock
from taskit.job import Lease
from tests._doubles import WatchedBroker

pytestmark = pytest.mark.anyio

WAIT = 5.0
SHORT_LEASE = 0.3


class CountingBroker(WatchedBroker):
    """Also counts the leases it hands out, so a test can wait until a worker holds some."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__(clock)
        self.leased = 0
        self._leased_news = anyio.Event()

    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        leases = await super().reserve(queues, count=count, lease=lease, timeout=timeout)
        self.leased += len(leases)
        self._leased_news.set()
        return leases

    async def wait_leased(self, count: int) -> None:
        """Until ``count`` leases were handed out in all."""
        while self.leased < count:
            self._leased_news = anyio.Event()
            await self._leased_news.wait()


def make_app(broker: WatchedBroker | None = None, **settings: Any) -> tuple[App, CountingBroker]:
    settings.setdefault("backoff", 0.0)
    broker = broker if broker is not None else CountingBroker()
    assert isinstance(broker, CountingBroker)
    return App(broker, settings=Settings(**settings)), broker


class LogWatch(logging.Handler):
    """Sets ``seen`` once the worker has logged ``count`` lines containing ``text``."""

    def __init__(self, text: str, count: int) -> None:
        super().__init__()
        self.text, self.count = text, count
        self.seen = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count -= 1
            if self.count <= 0:
                self.seen.set()


@contextmanager
def watching_log(text: str, count: int) -> Iterator[LogWatch]:
    logger = logging.getLogger("taskit.worker")
    watch = LogWatch(text, count)
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)


class Gate:
    """A task whose first job blocks until ``open()``; every job's label is recorded."""

    def __init__(self, app: App) -> None:
        self.ran: list[str] = []
        self.first_started = anyio.Event()
        self.opened = anyio.Event()

        @app.task(name="gated")
        async def gated(label: str) -> str:
            self.ran.append(label)
            if len(self.ran) == 1:
                self.first_started.set()
                await self.opened.wait()
            return label

        self.task = gated

    async def enqueue(self, *labels: str) -> list[Job]:
        return [await self.task.enqueue(label) for label in labels]


async def stored(app: App, job: Job) -> Job:
    found = await app.get_job(job.id)
    assert found is not None
    return found


async def running_in_broker(app: App) -> int:
    return (await app.stats())["default"].running


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_a_bad_prefetch_is_refused_naming_it(value: Any) -> None:
    app, _ = make_app()
    for build in (lambda: app.worker(prefetch=value), lambda: Worker(app, prefetch=value)):
        with pytest.raises(ConfigurationError, match="prefetch must be"):
            build()
    with pytest.raises(ConfigurationError, match="prefetch"):
        Settings(prefetch=value)


def test_prefetch_comes_from_the_settings_and_the_environment() -> None:
    app, _ = make_app(prefetch=3)
    assert (app.worker().prefetch, app.worker(prefetch=0).prefetch) == (3, 0)
    assert Settings.from_env({"TASKIT_PREFETCH": "4"}).prefetch == 4
    with pytest.raises(ConfigurationError, match="TASKIT_PREFETCH"):
        Settings.from_env({"TASKIT_PREFETCH": "-1"})


# -- holding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefetch", [0, 2])
async def test_a_worker_holds_prefetch_jobs_beyond_its_runners_and_lists_only_running(
    prefetch: int,
) -> None:
    app, broker = make_app()
    gate = Gate(app)
    jobs = await gate.enqueue("a", "b", "c", "d", "e")

    async with app.worker(concurrency=1, prefetch=prefetch) as worker:
        with anyio.fail_after(WAIT):
            await gate.first_started.wait()
            await broker.wait_leased(1 + prefetch)
        await anyio.sleep(0.05)  # and takes no more than its share
        assert await running_in_broker(app) == 1 + prefetch  # leased: running or held
        assert worker.running_count == 1
        assert [listed.id for listed in worker.running_jobs()] == [jobs[0].id]
        gate.opened.set()
        with anyio.fail_after(WAIT):
            for job in jobs:
                await app.result(job.id, timeout=WAIT)

    assert gate.ran == ["a", "b", "c", "d", "e"]  # held jobs run in their order
    assert worker.stats.completed == 5


async def test_burst_waits_for_held_jobs_and_runs_each_once() -> None:
    app, _ = make_app()
    ran: list[int] = []

    @app.task
    async def note(n: int) -> None:
        ran.append(n)
        await anyio.lowlevel.checkpoint()

    for n in range(25):
        await note.enqueue(n)
    with anyio.fail_after(WAIT):
        stats = await app.worker(concurrency=2, prefetch=3).run(burst=True)

    assert sorted(ran) == list(range(25))
    assert (stats.completed, stats.released) == (25, 0)
    counts = (await app.stats())["default"]
    assert (counts.completed, counts.queued, counts.running) == (25, 0, 0)


# -- leases of held jobs ------------------------------------------------------------------------
async def test_the_heartbeat_keeps_held_jobs_leased() -> None:
    """The first job runs for several leases while the second is held: without the heartbeat
    on it, the worker's own reaper reclaims the held lease (a retry, attempt 2)."""
    app, _ = make_app(visibility_timeout=SHORT_LEASE, reaper_interval=0.05)
    gate = Gate(app)
    first, held = await gate.enqueue("first", "held")

    async with app.worker(concurrency=1, prefetch=1) as worker:
        with anyio.fail_after(WAIT):
            await gate.first_started.wait()
        await anyio.sleep(3.5 * SHORT_LEASE)
        gate.opened.set()
        with anyio.fail_after(WAIT):
            await app.result(held.id, timeout=WAIT)

    assert gate.ran == ["first", "held"]
    for job in (first, held):
        done = await stored(app, job)
        assert (done.status, done.attempts, done.error) == (JobStatus.COMPLETED, 1, None)
    assert (worker.stats.completed, worker.stats.retried, worker.stats.lost) == (2, 0, 0)


async def test_a_held_job_whose_cancel_is_requested_is_cancelled_unrun_at_once() -> None:
    """Settled within a heartbeat, while the runner is still busy: not when it frees up."""
    app, broker = make_app(visibility_timeout=SHORT_LEASE)
    gate = Gate(app)
    first, held = await gate.enqueue("first", "held")

    async with app.worker(concurrency=1, prefetch=1) as worker:
        with anyio.fail_after(WAIT):
            await gate.first_started.wait()
            await broker.wait_leased(2)
        assert await app.cancel(held.id) is True
        result = await app.result(held.id, timeout=WAIT)
        assert (await stored(app, first)).status is JobStatus.RUNNING  # still busy
        gate.opened.set()
        await app.result(first.id, timeout=WAIT)

    assert (result.success, result.error_type) == (False, "Cancelled")
    cancelled = await stored(app, held)
    assert cancelled.status is JobStatus.CANCELLED
    assert gate.ran == ["first"]
    assert (worker.stats.cancelled, worker.stats.completed) == (1, 1)


async def test_a_held_job_whose_lease_was_lost_is_never_run() -> None:
    """Both leases pass on the broker's (fake) clock and another worker takes both jobs over;
    the heartbeat (every 0.1 s of real time) hears they are lost: the running one is stopped,
    the held one dropped unrun, though the runner is free again."""
    clock = FakeClock()
    app, broker = make_app(
        CountingBroker(clock), visibility_timeout=SHORT_LEASE, reaper_interval=60.0
    )
    gate = Gate(app)
    first, held = await gate.enqueue("first", "held")

    with watching_log("lost its lease", 2) as lost:
        async with app.worker(concurrency=1, prefetch=1) as worker:
            with anyio.fail_after(WAIT):
                await gate.first_started.wait()
                await broker.wait_leased(2)
            clock.advance(1.0)
            taken = await broker.reclaim(["default"], lease=60.0)  # another worker's reaper
            assert sorted(lease.job.id for lease in taken) == sorted([first.id, held.id])
            with anyio.fail_after(WAIT):
                await lost.seen.wait()

    assert gate.ran == ["first"]
    assert worker.stats.lost == 2
    assert worker.stats.completed == 0
    for job in (first, held):  # still the other worker's, untouched
        assert (await stored(app, job)).status is JobStatus.RUNNING


class Stall:
    """A task whose ``stall`` job blocks the event loop for longer than the lease (no heartbeat
    runs meanwhile), then, if ``reclaim``, has another worker's reaper take over every expired
    lease, as it could have during the stall (the memory broker's ``reclaim`` does not yield)."""

    def __init__(self, app: App, broker: CountingBroker, *, reclaim: bool) -> None:
        self.ran: list[str] = []
        self.taken: list[str] = []

        @app.task(name="stalling")
        async def stalling(label: str) -> None:
            self.ran.append(label)
            if label == "stall":
                time.sleep(SHORT_LEASE * 2)  # noqa: ASYNC251 - the stall: no heartbeat runs
                if reclaim:
                    taken = await broker.reclaim(["default"], lease=60.0)
                    self.taken.extend(lease.job.id for lease in taken)

        self.task = stalling


async def test_a_held_job_whose_lease_ran_out_unextended_is_not_started() -> None:
    """The loop stalls past the lease and another worker takes the held job over meanwhile:
    the runner that frees up does not start it before any heartbeat could hear of it."""
    app, broker = make_app(visibility_timeout=SHORT_LEASE, reaper_interval=60.0)
    stall = Stall(app, broker, reclaim=True)
    first = await stall.task.enqueue("stall")
    held = await stall.task.enqueue("held")

    with watching_log("ran out while it waited", 1) as ran_out:
        async with app.worker(concurrency=1, prefetch=1) as worker:
            with anyio.fail_after(WAIT):
                await ran_out.seen.wait()
                await broker.outcomes(2)  # the first's COMPLETE, the held one's RELEASE

    assert stall.ran == ["stall"]
    assert worker.stats.lost == 2  # both refused: the leases had passed on
    assert sorted(stall.taken) == sorted([first.id, held.id])
    assert (await stored(app, held)).status is JobStatus.RUNNING  # the other worker's


class NoReaper(CountingBroker):
    """Reclaims nothing: no reaper anywhere takes an expired lease over (the worker's own first
    sweep may come after the stall)."""

    async def reclaim(
        self, queues: Sequence[str], *, lease: float, limit: int = 100
    ) -> list[Lease]:
        return []


async def test_a_held_job_whose_lease_ran_out_but_was_not_taken_is_handed_back() -> None:
    """Nobody took the expired lease over: the hand-back applies (attempt refunded), and the
    job runs once, under a new lease."""
    app, broker = make_app(NoReaper(), visibility_timeout=SHORT_LEASE)
    stall = Stall(app, broker, reclaim=False)
    await stall.task.enqueue("stall")
    held = await stall.task.enqueue("held")

    with watching_log("ran out while it waited", 1) as ran_out:
        async with app.worker(concurrency=1, prefetch=1) as worker:
            with anyio.fail_after(WAIT):
                await ran_out.seen.wait()
                await app.result(held.id, timeout=WAIT)

    assert stall.ran == ["stall", "held"]
    done = await stored(app, held)
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 1)
    assert (worker.stats.completed, worker.stats.released) == (2, 1)


# -- stopping -----------------------------------------------------------------------------------
async def test_a_stop_hands_held_jobs_back_at_once_unrun_with_their_attempt_refunded() -> None:
    app, broker = make_app(grace_period=30.0)  # never waited out: the first job finishes
    gate = Gate(app)
    first, *held = await gate.enqueue("first", "h1", "h2", "queued")

    worker = app.worker(concurrency=1, prefetch=2)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await gate.first_started.wait()
            await broker.wait_leased(3)
            worker.stop()
            released = await broker.outcomes(2)  # handed back while the first job still runs
            assert {o.kind.value for o in released} == {"release"}
            for job in held:
                back = await stored(app, job)
                assert (back.status, back.attempts) == (JobStatus.PENDING, 0)
            assert (await stored(app, first)).status is JobStatus.RUNNING
            gate.opened.set()

    assert gate.ran == ["first"]
    assert (worker.stats.completed, worker.stats.released) == (1, 2)
    counts = (await app.stats())["default"]
    assert (counts.completed, counts.queued, counts.running) == (1, 3, 0)
    leases = await app.broker.reserve(["default"], count=10, lease=30.0, timeout=0)
    assert [lease.job.id for lease in leases] == [job.id for job in held]  # in their order


class ReserveLog(CountingBroker):
    """Also records how many leases each reserve handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        leases = await super().reserve(queues, count=count, lease=lease, timeout=timeout)
        if leases:
            self.sizes.append(len(leases))
        return leases


async def test_the_buffer_is_refilled_once_empty_all_its_room_in_one_reserve() -> None:
    """One runner, four held: each reserve brings the buffer's whole room once the runner took
    the last held job, not one job after each finished one (a round trip a job)."""
    broker = ReserveLog()
    app, _ = make_app(broker)

    @app.task
    async def note(n: int) -> None:
        await anyio.lowlevel.checkpoint()

    for n in range(21):
        await note.enqueue(n)
    with anyio.fail_after(WAIT):
        stats = await app.worker(concurrency=1, prefetch=4).run(burst=True)

    assert stats.completed == 21
    assert sum(broker.sizes) == 21
    # 5 first (the runner's and the buffer's), then 4 or 5 (5 when the running job also ended
    # before the reserve ran), the last what is left
    assert broker.sizes[0] == 5
    assert all(size >= 4 for size in broker.sizes[:-1]), broker.sizes
