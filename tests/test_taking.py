"""A worker that holds one job at a time (concurrency 1, prefetch 0) on a broker with
``settle_and_reserve`` sends each job's outcome with a ``Taking``: the settler settles it and
leases the runner's next job in one broker call. A stop while that call is out loses nothing
(leases it answers go back, unrun, their attempt refunded); an outage on it, or a broker
without the step, leaves the runner to reserve itself, as before. Memory and SQLite brokers
(their own step); ``Taking`` alone at the end."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from taskit import App, Job, JobStatus, Settings, Worker, WorkerStats
from taskit._settler import Settler, Taking
from taskit.broker.memory import MemoryBroker
from taskit.broker.sqlite import SqliteBroker
from taskit.errors import BrokerConnectionError
from taskit.job import Lease, Outcome, OutcomeKind, encode_arguments

pytestmark = pytest.mark.anyio

WAIT = 10.0
LONG_GRACE = 30.0  # a grace period that must never be waited out


class Steps:
    """What the worker asked of its broker: settles, reserves and combined steps (with what
    each combined step answered), and a hold on the ``hold``-th combined step: it waits until
    ``go`` is set, cancellable unless ``deaf``; ``fail`` of them raise an outage first."""

    def __init__(self, hold: int | None = None, deaf: bool = False, fail: int = 0) -> None:
        self.settles = self.reserves = 0
        self.taken: list[int | None] = []  # per combined step: leases answered, None: no step
        self.fail = fail
        self.hold, self.deaf = hold, deaf
        self.holding, self.go = anyio.Event(), anyio.Event()


def watched(base: type[MemoryBroker] | type[SqliteBroker]) -> type:
    """``base`` with every ``settle_and_reserve`` (and ``settle_and_reserve_now`` done)
    recorded in ``self.steps`` (``settle`` and ``reserve`` left as they are, so the broker
    keeps its own combined step)."""

    class Watched(base):  # type: ignore[valid-type, misc]
        steps: Steps

        async def settle_and_reserve(
            self, outcomes: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
        ) -> tuple[list[bool], list[Lease]] | None:
            steps = self.steps
            if steps.fail:
                steps.fail -= 1
                raise BrokerConnectionError("the broker cannot be reached")
            if steps.hold is not None and len(steps.taken) + 1 >= steps.hold:
                steps.holding.set()
                with anyio.CancelScope(shield=steps.deaf):
                    await steps.go.wait()
            both: tuple[list[bool], list[Lease]] | None = await super().settle_and_reserve(
                outcomes, queues, count=count, lease=lease
            )
            steps.taken.append(None if both is None else len(both[1]))
            return both

        def settle_and_reserve_now(
            self, outcomes: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
        ) -> tuple[list[bool], list[Lease]] | None:
            # A chain's step, in its handler thread (``taskit._chain``): recorded when done.
            both: tuple[list[bool], list[Lease]] | None = super().settle_and_reserve_now(
                outcomes, queues, count=count, lease=lease
            )
            if both is not None:
                self.steps.taken.append(len(both[1]))
            return both

    return Watched


MakeBroker = Callable[[Steps], MemoryBroker | SqliteBroker]


@pytest.fixture(params=["memory", "sqlite"])
def make_broker(request: pytest.FixtureRequest, tmp_path: Path) -> MakeBroker:
    def make(steps: Steps) -> MemoryBroker | SqliteBroker:
        if request.param == "memory":
            broker = watched(MemoryBroker)()
        else:
            broker = watched(SqliteBroker)(tmp_path / "jobs.db")
        broker.steps = steps
        return broker  # type: ignore[no-any-return]

    return make


class Notes:
    """An App whose one task notes its argument (``ran``), as an ``async def`` or a ``def``."""

    def __init__(self, broker: MemoryBroker | SqliteBroker, sync: bool = False) -> None:
        self.app = App(broker, settings=Settings(grace_period=LONG_GRACE, backoff=0.0))
        self.ran: list[int] = []
        if sync:

            def note(n: int) -> None:
                self.ran.append(n)
        else:

            async def note(n: int) -> None:  # type: ignore[misc]
                self.ran.append(n)

        self.task = self.app.task(note)

    async def enqueue(self, count: int) -> list[Job]:
        return [await self.task.enqueue(n) for n in range(count)]

    async def drain(self, concurrency: int = 1) -> WorkerStats:
        """A burst worker's run over what is queued (bounded: a hang fails the test)."""
        with anyio.fail_after(WAIT):
            return await Worker(self.app, concurrency=concurrency).run(burst=True)

    async def status(self, job: Job) -> tuple[JobStatus, int]:
        stored = await self.app.get_job(job.id)
        assert stored is not None
        return stored.status, stored.attempts


@pytest.mark.parametrize("sync", [False, True], ids=["async-def", "def"])
async def test_each_job_is_settled_and_the_next_taken_in_one_call(
    make_broker: MakeBroker, sync: bool
) -> None:
    steps = Steps()
    notes = Notes(make_broker(steps), sync)
    jobs = await notes.enqueue(6)

    stats = await notes.drain()

    assert notes.ran == list(range(6))
    assert stats.completed == 6
    # The fetcher reserved the first job; each job's step took the next; the last found none.
    assert steps.taken == [1, 1, 1, 1, 1, 0]
    for job in jobs:
        assert await notes.status(job) == (JobStatus.COMPLETED, 1)
    await notes.app.close()


async def test_a_worker_holding_more_than_one_job_never_takes_with_a_settle(
    make_broker: MakeBroker,
) -> None:
    steps = Steps()
    notes = Notes(make_broker(steps))
    await notes.enqueue(6)

    stats = await notes.drain(2)

    assert sorted(notes.ran) == list(range(6))
    assert stats.completed == 6
    assert steps.taken == []
    await notes.app.close()


async def test_an_outage_on_the_step_leaves_the_runner_to_reserve_and_loses_nothing(
    make_broker: MakeBroker,
) -> None:
    steps = Steps(fail=1)
    notes = Notes(make_broker(steps))
    jobs = await notes.enqueue(3)

    stats = await notes.drain()

    assert notes.ran == [0, 1, 2]  # each once, in order
    assert stats.completed == 3
    assert steps.fail == 0  # the first job's step met the outage: its settle was retried
    # alone and the runner reserved the second job itself; while that retry was due, the
    # runner reserved on its own too, then steps took the rest (the last found none).
    assert steps.taken in ([], [0], [1, 0])
    for job in jobs:
        assert await notes.status(job) == (JobStatus.COMPLETED, 1)
    await notes.app.close()


async def test_a_stop_cancels_the_wait_for_the_next_job_and_loses_nothing(
    make_broker: MakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(hold=1)
    notes = Notes(make_broker(steps))
    first, *rest = await notes.enqueue(3)
    worker = Worker(notes.app, concurrency=1)
    abandoned = anyio.Event()
    abandon = Taking.abandon

    def noted(taking: Taking) -> None:
        abandon(taking)
        abandoned.set()

    monkeypatch.setattr(Taking, "abandon", noted)

    with anyio.fail_after(WAIT):  # a stop that waited on the step (or the grace) would hang
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await steps.holding.wait()  # the first job's step, held
            worker.stop()
            await abandoned.wait()  # the runner gave up waiting for the next job ...
            steps.go.set()  # ... then the step settles the first job and takes the second

    assert notes.ran == [0]
    # Handed back by the settler at once, as a cancelled reserve hands back what it took: the
    # job never reached the worker (not counted as released by it).
    assert (worker.stats.completed, worker.stats.released) == (1, 0)
    assert steps.taken == [1]
    assert await notes.status(first) == (JobStatus.COMPLETED, 1)
    for job in rest:  # the second went back unrun, its attempt refunded
        assert await notes.status(job) == (JobStatus.PENDING, 0)
    counts = (await notes.app.stats())["default"]
    assert (counts.running, counts.queued) == (0, 2)
    await notes.app.close()


async def test_a_broker_without_the_step_is_asked_once_then_settled_and_reserved_apart() -> None:
    settled: list[int] = []

    class OwnSettle(MemoryBroker):  # overrides settle: its combined step answers None
        async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
            settled.append(len(outcomes))
            return await super().settle(outcomes)

    steps = Steps()
    broker = watched(OwnSettle)()
    broker.steps = steps
    notes = Notes(broker)
    await notes.enqueue(4)

    stats = await notes.drain()

    assert notes.ran == [0, 1, 2, 3]
    assert stats.completed == 4
    assert steps.taken == [None]  # asked once; after its None, never again
    assert sum(settled) == 4  # every outcome through the broker's own settle


def _hold_the_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection (another process, in real life) holding the write lock."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_a_hard_stop_while_the_step_waits_for_the_write_lock_leaves_no_job_leased(
    tmp_path: Path,
) -> None:
    """The step outlives the settler's deadline (a hard stop gives it a second): the lease it
    takes then goes back at once, unrun and its attempt refunded, not left to expire."""
    path = tmp_path / "jobs.db"
    app = App(SqliteBroker(path), settings=Settings(grace_period=LONG_GRACE, backoff=0.0))
    running, go = anyio.Event(), anyio.Event()
    ran: list[int] = []

    @app.task
    async def note(n: int) -> None:
        ran.append(n)
        if n == 0:
            running.set()
            await go.wait()

    first, second = await note.enqueue(0), await note.enqueue(1)
    worker = Worker(app, concurrency=1)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await running.wait()
            locker = await anyio.to_thread.run_sync(_hold_the_write_lock, path)
            go.set()  # the first job ends: its settle and the next job's take wait on the lock
            while worker.settling_count == 0:  # noqa: ASYNC110 - no event marks a settle sent
                await anyio.sleep(0.01)
            worker.stop(graceful=False)
            await anyio.sleep(1.5)  # past the settler's second
            await anyio.to_thread.run_sync(locker.rollback)  # free: the step commits
            await anyio.to_thread.run_sync(locker.close)

    assert ran == [0]
    assert await notes_status(app, first) == (JobStatus.COMPLETED, 1)
    assert await notes_status(app, second) == (JobStatus.PENDING, 0)
    await app.close()


async def notes_status(app: App, job: Job) -> tuple[JobStatus, int]:
    stored = await app.get_job(job.id)
    assert stored is not None
    return stored.status, stored.attempts


async def test_a_settle_replaced_on_the_broker_instance_sees_every_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = MemoryBroker()
    app = App(broker, settings=Settings(grace_period=LONG_GRACE, backoff=0.0))
    seen: list[str] = []
    own_settle = broker.settle

    async def counted(outcomes: Sequence[Outcome]) -> list[bool]:
        seen.extend(outcome.job_id for outcome in outcomes)
        return await own_settle(outcomes)

    monkeypatch.setattr(broker, "settle", counted)

    @app.task
    async def note(n: int) -> None:
        pass

    jobs = [await note.enqueue(n) for n in range(3)]
    with anyio.fail_after(WAIT):
        stats = await Worker(app, concurrency=1).run(burst=True)

    assert stats.completed == 3
    assert seen == [job.id for job in jobs]  # every outcome through the settle given
    await app.close()


async def test_a_runner_does_not_wait_behind_a_settle_retried_through_an_outage() -> None:
    """While the settler retries a batch through an outage, a runner's next outcome does not
    wait for it to take its next job: the runner reserves itself."""
    back: list[Lease] = []
    broker = MemoryBroker()
    settler = Settler(broker, 30.0, lambda outcome, settled: None)
    settler._outage.failed(BrokerConnectionError("down"))  # as after a failed try
    taking = Taking(["q"], 30.0, back.extend)
    settler.submit(Outcome(job_id="j", token="t", kind=OutcomeKind.COMPLETE), taking)

    with anyio.fail_after(1):
        assert await taking.wait() is None  # answered at once: reserve yourself


# -- Taking alone ------------------------------------------------------------------------------


def lease(n: int) -> Lease:
    job = Job(
        id=f"j{n}",
        task="t",
        queue="q",
        payload=encode_arguments((), {}),
        created_at=datetime.now(UTC),
    )
    return Lease(job=job, token=f"t{n}", deadline=0.0)


async def test_a_taking_hands_its_answer_to_the_runner_once() -> None:
    back: list[Lease] = []
    taking = Taking(["q"], 30.0, back.extend)
    given = [lease(1)]
    taking.answer(given)
    taking.answer(None)  # a second answer is ignored

    assert await taking.wait() is given
    assert back == []


@pytest.mark.parametrize("answered_first", [True, False])
async def test_leases_of_an_abandoned_taking_are_handed_back(answered_first: bool) -> None:
    back: list[Lease] = []
    taking = Taking(["q"], 30.0, back.extend)
    given = [lease(1)]
    if answered_first:
        taking.answer(given)
        taking.abandon()
    else:
        taking.abandon()
        taking.answer(given)

    assert back == given


async def test_a_runner_cancelled_while_it_waits_abandons_the_taking() -> None:
    back: list[Lease] = []
    taking = Taking(["q"], 30.0, back.extend)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await taking.wait()
    given = [lease(2)]
    taking.answer(given)

    assert back == given
