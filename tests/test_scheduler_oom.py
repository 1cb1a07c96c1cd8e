"""A scheduled run whose claim was won but whose enqueue was refused (Redis full) is enqueued on
the next tick, not skipped as "taken by another scheduler"."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from taskit import App, BrokerOutOfMemoryError, MemoryBroker
from taskit.clock import FakeClock
from taskit.job import Job
from taskit.scheduler import Scheduler

pytestmark = pytest.mark.anyio

MIDNIGHT = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


class FullOnce(MemoryBroker):
    """Refuses the first enqueue as a full Redis would (nothing stored)."""

    refusals = 1

    async def enqueue(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job]:
        if self.refusals:
            self.refusals -= 1
            raise BrokerOutOfMemoryError("Redis is out of memory (maxmemory)")
        return await super().enqueue(jobs, delays=delays)


async def test_a_run_refused_after_its_claim_is_enqueued_on_the_next_tick() -> None:
    clock = FakeClock(MIDNIGHT + 10)
    app = App(FullOnce(clock=clock))

    @app.task(name="sweep")
    async def sweep() -> None: ...

    app.periodic(every=60)(sweep)
    scheduler = Scheduler(app, clock=clock)
    await scheduler.tick()
    clock.set(MIDNIGHT + 60)
    assert await scheduler.tick() == []  # refused: the claim is won, the job not stored
    [job] = await scheduler.tick()
    assert job.id == f"schedule:sweep:{round((MIDNIGHT + 60) * 1000)}"
    assert await scheduler.tick() == []  # once
