"""The Redis broker and the memory broker, driven through the same random operations, agree.

Only operations whose outcome does not depend on time passing are drawn (the memory broker runs on
a fake clock, Redis on its own), so every answer and every job must match exactly.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.clock import FakeClock
from taskit.job import Job, JobResult, Lease, Outcome, OutcomeKind, encode_arguments
from tests.broker._redis_kinds import RedisHarness

pytestmark = pytest.mark.anyio

QUEUES = ["a", "b", "c"]
IDS = [f"job-{i}" for i in range(12)]
LONG = 300.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def view(job: Job | None) -> Any:
    """What must agree between brokers: everything but times and the creation stamp."""
    if job is None:
        return None
    return (job.id, job.queue, job.status, job.attempts, job.priority, job.args, job.error,
            job.error_type, job.traceback, job.result, job.metadata)  # fmt: skip


class Twin:
    """The same operation on both brokers; leases kept per broker, matched by job id."""

    def __init__(self, redis_broker: Broker, memory: Broker, rng: random.Random) -> None:
        self.brokers = (redis_broker, memory)
        self.leases: tuple[dict[str, Lease], dict[str, Lease]] = ({}, {})
        self.rng = rng
        self.created = datetime.now(UTC)

    async def both(self, name: str, *args: Any, **kwargs: Any) -> Any:
        first, second = [await getattr(b, name)(*args, **kwargs) for b in self.brokers]
        return first, second

    def job(self) -> Job:
        rng = self.rng
        return Job(
            id=rng.choice(IDS),
            task="t",
            queue=rng.choice(QUEUES),
            payload=encode_arguments((rng.randint(0, 9),), {}),
            created_at=self.created,
            priority=rng.choice([0, 0, 1, 5]),
        )

    async def step(self) -> None:
        rng = self.rng
        op = rng.choice(["enqueue", "reserve", "settle", "settle", "extend", "cancel", "get",
                         "stats", "dead", "requeue", "purge", "purge_dead", "reclaim"])  # fmt: skip
        if op == "enqueue":
            jobs = [self.job() for _ in range(rng.randint(1, 3))]
            delays = [rng.choice([0.0, 0.0, LONG]) for _ in jobs]  # LONG: scheduled all test long
            got = await self.both("enqueue", jobs, delays=delays)
            assert [view(j) for j in got[0]] == [view(j) for j in got[1]]
        elif op == "reserve":
            queues = rng.sample(QUEUES, rng.randint(1, 3))
            # A zero lease is expired at once on both clocks: reclaim can take it.
            lease = rng.choice([LONG, LONG, 0.0])
            got = await self.both(
                "reserve", queues, count=rng.randint(1, 4), lease=lease, timeout=0
            )
            assert [view(h.job) for h in got[0]] == [view(h.job) for h in got[1]]
            for side, leases in zip(self.leases, got, strict=True):
                side.update({h.job.id: h for h in leases})
        elif op in ("settle", "extend") and self.leases[1]:
            chosen = rng.sample(sorted(self.leases[1]), min(len(self.leases[1]), 2))
            if op == "extend":
                answers = [
                    await b.extend([side[i] for i in chosen], lease=LONG)
                    for b, side in zip(self.brokers, self.leases, strict=True)
                ]
                assert answers[0] == answers[1]
                return
            drawn = [
                (rng.choice(list(OutcomeKind)), rng.choice([None, "boom"]), rng.choice([0.0, LONG]))
                for _ in chosen
            ]
            result = JobResult(success=True, value=rng.randint(0, 9))
            answers = [
                await b.settle(
                    [
                        Outcome(
                            job_id=i,
                            token=side[i].token,
                            kind=kind,
                            result=result,
                            error=error,
                            error_type=error and "E",
                            delay=delay,
                        )
                        for i, (kind, error, delay) in zip(chosen, drawn, strict=True)
                    ]
                )
                for b, side in zip(self.brokers, self.leases, strict=True)
            ]
            assert answers[0] == answers[1]
        elif op == "reclaim":
            # Leases from one reserve share a deadline on the frozen clock but not on Redis's, so
            # the order may differ: compare as sets, with a limit above the number of jobs.
            got = await self.both("reclaim", rng.sample(QUEUES, 2), lease=LONG, limit=100)
            assert sorted(map(view, (h.job for h in got[0]))) == sorted(
                map(view, (h.job for h in got[1]))
            )
            for side, leases in zip(self.leases, got, strict=True):
                side.update({h.job.id: h for h in leases})
        elif op == "cancel":
            job_id = rng.choice(IDS)
            got = await self.both("cancel", job_id)
            assert got[0] == got[1]
        elif op == "get":
            for job_id in IDS:
                got = await self.both("get", job_id)
                assert view(got[0]) == view(got[1]), job_id
        elif op == "stats":
            got = await self.both("stats", QUEUES)
            assert got[0] == got[1]
        elif op == "dead":
            queue = rng.choice(QUEUES)
            got = await self.both("dead_letters", queue)
            assert [view(j) for j in got[0]] == [view(j) for j in got[1]]
        elif op == "requeue":
            queue = rng.choice(QUEUES)
            ids = None if rng.random() < 0.5 else rng.sample(IDS, 3)
            got = await self.both("requeue_dead", queue, ids)
            assert got[0] == got[1]
        elif op in ("purge", "purge_dead"):
            got = await self.both(op, rng.choice(QUEUES))
            assert got[0] == got[1]


@pytest.mark.parametrize("seed", range(10))
async def test_redis_and_memory_brokers_agree(rh: RedisHarness, seed: int) -> None:
    memory = MemoryBroker(clock=FakeClock(), result_ttl=60.0)
    twin = Twin(rh.broker, memory, random.Random(seed))
    for _ in range(150):
        await twin.step()
    for job_id in IDS:
        got = await twin.both("get", job_id)
        assert view(got[0]) == view(got[1])
    assert await rh.broker.stats() == await memory.stats()
