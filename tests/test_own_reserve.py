"""A worker that holds one job at a time (concurrency 1, prefetch 0) has its runner reserve the
next job itself while jobs are ready at once; the fetcher takes over on an empty queue or an
error. A stop cancels that reserve as it cancels the fetcher's: nothing is reserved after it,
nothing is lost, and it ends without waiting on the broker. Memory broker."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from taskit import App, Job, JobStatus, Settings, Worker
from taskit.errors import BrokerConnectionError
from taskit.job import Lease
from tests._doubles import WatchedBroker

pytestmark = pytest.mark.anyio

WAIT = 5.0
LONG_GRACE = 30.0  # a grace period that must never be waited out


class RunnerReserves(WatchedBroker):
    """Records which task made each reserve that handed out a job (the runner's or not). From
    the ``hold``-th call on made by a runner, it waits until the test lets it go (``go``):
    cancellable, or, with ``deaf``, not (a broker that returns leases to a cancelled call)."""

    def __init__(self, hold: int | None = None, *, deaf: bool = False, fail: int = 0) -> None:
        super().__init__()
        self.by_runner: list[bool] = []  # per reserve that handed out a job
        self.runner_calls = 0
        self.fail = fail  # how many of the runner's reserves raise an outage first
        self._hold, self._deaf = hold, deaf
        self.holding = anyio.Event()
        self.go = anyio.Event()
        self.cancelled = False

    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        runner = "_runner" in anyio.get_current_task().name
        if runner:
            self.runner_calls += 1
            if self.fail:
                self.fail -= 1
                raise BrokerConnectionError("the broker cannot be reached")
        held = runner and self._hold is not None and self.runner_calls >= self._hold
        with anyio.CancelScope(shield=held and self._deaf):
            if held:
                await self._wait_for_release()
            leases = await super().reserve(queues, count=count, lease=lease, timeout=timeout)
        self.by_runner.extend([runner] * len(leases))
        return leases

    async def _wait_for_release(self) -> None:
        self.holding.set()
        try:
            await self.go.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise


class Notes:
    """An App on ``broker`` whose one task notes its argument (``ran``)."""

    def __init__(self, broker: RunnerReserves) -> None:
        self.app = App(broker, settings=Settings(grace_period=LONG_GRACE, backoff=0.0))
        self.ran: list[int] = []

        @self.app.task
        async def note(n: int) -> None:
            self.ran.append(n)

        self.task = note

    async def enqueue(self, count: int) -> list[Job]:
        return [await self.task.enqueue(n) for n in range(count)]


async def status(app: App, job: Job) -> tuple[JobStatus, int]:
    stored = await app.get_job(job.id)
    assert stored is not None
    return stored.status, stored.attempts


async def test_the_runner_reserves_each_next_job_itself_in_order() -> None:
    broker = RunnerReserves()
    notes = Notes(broker)
    app, ran = notes.app, notes.ran
    await notes.enqueue(6)

    with anyio.fail_after(WAIT):
        stats = await Worker(app, concurrency=1).run(burst=True)

    assert ran == list(range(6))
    assert stats.completed == 6
    # The fetcher reserves the first job (the runner was idle); the runner each one after it.
    assert broker.by_runner == [False] + [True] * 5


@pytest.mark.parametrize(("concurrency", "prefetch"), [(2, 0), (1, 1)])
async def test_a_worker_holding_more_than_one_job_reserves_through_its_fetcher_only(
    concurrency: int, prefetch: int
) -> None:
    broker = RunnerReserves()
    notes = Notes(broker)
    app, ran = notes.app, notes.ran
    await notes.enqueue(6)

    with anyio.fail_after(WAIT):
        stats = await Worker(app, concurrency=concurrency, prefetch=prefetch).run(burst=True)

    assert sorted(ran) == list(range(6))
    assert stats.completed == 6
    assert broker.runner_calls == 0


async def test_an_outage_in_the_runners_reserve_hands_over_to_the_fetcher() -> None:
    broker = RunnerReserves(fail=1)
    notes = Notes(broker)
    app, ran = notes.app, notes.ran
    await notes.enqueue(3)

    with anyio.fail_after(WAIT):
        stats = await Worker(app, concurrency=1).run(burst=True)

    assert ran == [0, 1, 2]
    assert stats.completed == 3
    # The runner's first reserve failed: the fetcher took the second job, the runner the third.
    assert broker.by_runner == [False, False, True]


async def test_a_stop_cancels_the_runners_reserve_and_loses_nothing() -> None:
    broker = RunnerReserves(hold=1)
    notes = Notes(broker)
    app, ran = notes.app, notes.ran
    first, *rest = await notes.enqueue(3)
    worker = Worker(app, concurrency=1)

    with anyio.fail_after(WAIT):  # a stop that waited on the broker (or the grace) would hang
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await broker.holding.wait()  # the runner asks for the next job after the first
            worker.stop()

    assert broker.cancelled
    assert ran == [0]
    assert worker.stats.completed == 1
    assert await status(app, first) == (JobStatus.COMPLETED, 1)
    for job in rest:
        assert await status(app, job) == (JobStatus.PENDING, 0)
    counts = (await app.stats())["default"]
    assert (counts.running, counts.queued) == (0, 2)


async def test_leases_a_stopped_runners_reserve_still_returns_are_handed_back_unrun() -> None:
    broker = RunnerReserves(hold=1, deaf=True)
    notes = Notes(broker)
    app, ran = notes.app, notes.ran
    _, second, third = await notes.enqueue(3)
    worker = Worker(app, concurrency=1)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await broker.holding.wait()
            worker.stop()
            broker.go.set()  # the reserve goes on after the stop, and takes a job

    assert not broker.cancelled
    assert broker.by_runner == [False, True]  # the second job was reserved after the stop
    assert ran == [0]
    assert (worker.stats.completed, worker.stats.released) == (1, 1)
    assert await status(app, second) == (JobStatus.PENDING, 0)  # back, its attempt refunded
    assert await status(app, third) == (JobStatus.PENDING, 0)
    counts = (await app.stats())["default"]
    assert (counts.running, counts.queued) == (0, 2)


@pytest.mark.parametrize("graceful", [True, False])
async def test_a_stop_while_a_job_runs_reserves_nothing_more(graceful: bool) -> None:
    broker = RunnerReserves()
    app = App(broker, settings=Settings(grace_period=LONG_GRACE, backoff=0.0))
    started, finish = anyio.Event(), anyio.Event()
    ran: list[int] = []

    @app.task
    async def slow(n: int) -> None:
        ran.append(n)
        started.set()
        await finish.wait()

    jobs = [await slow.enqueue(n) for n in range(3)]
    worker = Worker(app, concurrency=1)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            worker.stop(graceful=graceful)
            finish.set()  # a graceful stop lets it end; a hard one handed it back already

    assert ran == [0]
    assert broker.runner_calls == 0  # the runner did not ask for another job after the stop
    done = JobStatus.COMPLETED if graceful else JobStatus.PENDING
    assert await status(app, jobs[0]) == (done, 1 if graceful else 0)
    for job in jobs[1:]:
        assert await status(app, job) == (JobStatus.PENDING, 0)
