"""The settler is shielded from cancellation for its whole life, not a batch at a time: it
returns once closed and drained, or gives up at the ``give_up_at`` of ``close``, reporting what
it never sent as undelivered. So the worker closes it on every way out: a stop, an error, a
cancel from outside. Memory broker."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from taskit import App, BrokerAuthenticationError, JobStatus, MemoryBroker, Settings
from taskit._settler import Settled, Settler
from taskit.job import Lease, Outcome, OutcomeKind

pytestmark = pytest.mark.anyio

WAIT = 5.0


class GatedBroker(MemoryBroker):
    """Its settle calls wait until ``go`` is set (or for ever); ``calls`` counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.settling = anyio.Event()
        self.go = anyio.Event()

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        self.calls.append(len(outcomes))
        self.settling.set()
        await self.go.wait()
        return await super().settle(outcomes)


async def releases(broker: MemoryBroker, count: int) -> list[Outcome]:
    app = App(broker)

    @app.task
    async def noop() -> None:
        """Only enqueued and reserved here, never run."""

    for _ in range(count):
        await noop.enqueue()
    leases = await broker.reserve(["default"], count=count, lease=30.0, timeout=0)
    return [Outcome(job_id=x.job.id, token=x.token, kind=OutcomeKind.RELEASE) for x in leases]


async def test_outcomes_still_queued_when_the_settler_gives_up_are_reported_undelivered() -> None:
    broker = GatedBroker()  # never answers
    first, second = await releases(broker, 2)
    reported: dict[str, Settled] = {}
    settler = Settler(broker, 30.0, lambda o, ok: reported.__setitem__(o.job_id, ok))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(settler.run)
            settler.submit(first)
            await broker.settling.wait()
            settler.submit(second)  # queued behind the call in flight
            settler.close(give_up_at=anyio.current_time() + 0.05)

    assert broker.calls == [1]  # nothing was tried for the second after the give-up
    assert reported == {first.job_id: Settled.UNKNOWN, second.job_id: Settled.UNDELIVERED}


async def test_a_cancelled_settler_goes_on_until_closed_and_delivers_all_it_was_given() -> None:
    broker = GatedBroker()
    first, second = await releases(broker, 2)
    reported: dict[str, Settled] = {}
    settler = Settler(broker, 30.0, lambda o, ok: reported.__setitem__(o.job_id, ok))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(settler.run)
            settler.submit(first)
            await broker.settling.wait()
            tg.cancel_scope.cancel()  # it goes on: the call in flight, and what comes next
            settler.submit(second)
            settler.close()
            broker.go.set()

    assert reported == {first.job_id: Settled.APPLIED, second.job_id: Settled.APPLIED}
    assert broker.calls == [1, 1]


class FailsSecondReserve(MemoryBroker):
    """Its second reserve raises an error no wait heals (refused credentials)."""

    def __init__(self) -> None:
        super().__init__()
        self.reserves = 0

    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        self.reserves += 1
        if self.reserves >= 2:
            raise BrokerAuthenticationError("the broker refused the credentials")
        return await super().reserve(queues, count=count, lease=lease, timeout=timeout)


async def test_a_worker_ending_with_an_error_settles_what_ran_and_returns() -> None:
    app = App(FailsSecondReserve(), settings=Settings(backoff=0.0))

    @app.task
    async def noop() -> None:
        return None

    done, queued = await noop.enqueue(), await noop.enqueue()
    with (
        anyio.fail_after(WAIT),
        pytest.RaisesGroup(BrokerAuthenticationError, flatten_subgroups=True),
    ):
        await app.worker(concurrency=1).run()

    for job, status in ((done, JobStatus.COMPLETED), (queued, JobStatus.PENDING)):
        stored = await app.get_job(job.id)
        assert stored is not None
        assert stored.status is status


async def test_a_worker_cancelled_from_outside_settles_what_ran_and_returns() -> None:
    app = App(MemoryBroker(), settings=Settings(grace_period=30.0))
    started = anyio.Event()

    @app.task
    async def noop() -> None:
        return None

    @app.task
    async def endless() -> None:
        started.set()
        await anyio.sleep_forever()

    done = await noop.enqueue()
    await endless.enqueue()
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(app.worker(concurrency=1).run)
            await started.wait()  # the first job ran; its outcome may still be on its way
            tg.cancel_scope.cancel()

    stored = await app.get_job(done.id)
    assert stored is not None
    assert stored.status is JobStatus.COMPLETED


async def test_a_settler_idle_when_its_give_up_time_passes_gave_up_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A stopping worker whose broker was failing closes it with no time to spare: with nothing
    # queued, nothing was given up (no "gave up settling 0 jobs" error, no empty batch).
    calls: list[str] = []
    settler = Settler(MemoryBroker(), 30.0, lambda o, ok: calls.append("settled"),
                      lambda: calls.append("batch"))  # fmt: skip

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(settler.run)
            await anyio.wait_all_tasks_blocked()
            settler.close(give_up_at=anyio.current_time() - 1.0)

    assert calls == []
    assert "gave up" not in caplog.text
