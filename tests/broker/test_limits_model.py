"""A Hypothesis state machine drives a broker with concurrency limits: several workers reserve,
settle (every kind), die (their leases expire), reclaim what the dead left, and limits change
under them. After every step: no reserve hands out a job past a key's free slots, a job held
back never spends an attempt, and every job is where the model says (no job lost). At the end,
with the limits deleted, every job drains and every slot and line is back to empty.

Runs on the memory broker (fake clock), on a sharded broker of three memory brokers (limits are
kept in the home shard, so they hold exactly; the jobs without limits spread over the shards),
on the SQLite broker (fake clock, a file of its own per example) and on real Redis, a fixed
seed and a few examples (``LIMITS_MODEL_EXAMPLES`` raises them).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import anyio.from_thread
import pytest
import redis.asyncio
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.broker.redis import RedisBroker
from taskit.broker.sqlite import SqliteBroker
from taskit.clock import FakeClock
from taskit.job import Job, JobStatus, Lease, Outcome, OutcomeKind, encode_arguments
from taskit.limits import LimitSpec
from tests.broker._sharded import SHARDED_MEMORY, memory_shards

T = TypeVar("T")
Q = "q"
LONG = 300.0
WORKERS = 3
#: The limit keys a job may need: two keys of a keyed limit, and a global one.
KEY_SETS = [("ex:a",), ("ex:b",), ("ex:a", "g"), ("g",), ()]
EXAMPLES = int(os.environ.get("LIMITS_MODEL_EXAMPLES", "15"))
STEPS = int(os.environ.get("LIMITS_MODEL_STEPS", "30"))
KINDS = [OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.RETRY, OutcomeKind.RELEASE,
         OutcomeKind.DEAD_LETTER]  # fmt: skip
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DEAD_LETTER)


class LimitsMachine(RuleBasedStateMachine):
    portal: anyio.from_thread.BlockingPortal
    kind: str
    redis_url: str
    directory: Path

    def __init__(self) -> None:
        super().__init__()
        self.broker: Broker
        if self.kind == "memory":
            self.broker = MemoryBroker(clock=FakeClock())
        elif self.kind == SHARDED_MEMORY:
            self.broker = memory_shards(FakeClock(), result_ttl=86_400.0)
        elif self.kind == "sqlite":
            path = self.directory / f"{uuid.uuid4().hex}.sqlite3"
            self.broker = SqliteBroker(path, clock=FakeClock(), result_ttl=86_400.0)
        else:
            self.prefix = f"taskit-limits-model-{uuid.uuid4().hex[:10]}"
            self.broker = RedisBroker(self.redis_url, prefix=self.prefix)
        self.limits = {"ex": 1, "g": 2}
        self.call(
            self.broker.set_limits({n: LimitSpec(concurrency=c) for n, c in self.limits.items()})
        )
        self.keys: dict[str, tuple[str, ...]] = {}  # every job enqueued -> its limit keys
        self.attempts: Counter[str] = Counter()  # attempts the model has counted
        self.held: list[list[Lease]] = [[] for _ in range(WORKERS)]
        self.orphans: list[Lease] = []  # leases of dead workers, expired, not reclaimed yet
        self.done: set[str] = set()  # jobs settled for good (complete, fail, dead letter)

    def call(self, awaitable: Awaitable[T]) -> T:
        async def run() -> T:
            return await awaitable

        return self.portal.call(run)

    def running(self) -> Counter[str]:
        """Slots in use per limit key as the model sees them: every job leased, to a worker
        alive or dead."""
        count: Counter[str] = Counter()
        for lease in [*(x for w in self.held for x in w), *self.orphans]:
            count.update(dict.fromkeys(self.keys[lease.job.id], 1))
        return count

    @rule(which=st.integers(0, len(KEY_SETS) - 1), n=st.integers(1, 3))
    def enqueue(self, which: int, n: int) -> None:
        jobs = [
            Job(
                id=uuid.uuid4().hex,
                task="t",
                queue=Q,
                payload=encode_arguments((), {}),
                created_at=datetime.now(UTC),
                limits=KEY_SETS[which],
            )
            for _ in range(n)
        ]
        self.call(self.broker.enqueue(jobs))
        self.keys.update({job.id: job.limits for job in jobs})

    @rule(worker=st.integers(0, WORKERS - 1), count=st.integers(1, 4))
    def reserve(self, worker: int, count: int) -> None:
        before = self.running()
        got = self.call(self.broker.reserve([Q], count=count, lease=LONG, timeout=0))
        new: Counter[str] = Counter()
        for lease in got:
            self.attempts[lease.job.id] += 1
            # A miss spends no attempt: the count is the model's, leases only.
            assert lease.job.attempts == self.attempts[lease.job.id], lease.job.id
            new.update(dict.fromkeys(self.keys[lease.job.id], 1))
        for key, n in new.items():
            limit = self.limits.get(key.partition(":")[0])
            if limit is not None:
                assert before[key] + n <= limit, (key, before[key], n, limit)
        self.held[worker] += got

    @rule(worker=st.integers(0, WORKERS - 1), pick=st.integers(0, 10), kind=st.sampled_from(KINDS))
    def settle(self, worker: int, pick: int, kind: OutcomeKind) -> None:
        if not self.held[worker]:
            return
        lease = self.held[worker].pop(pick % len(self.held[worker]))
        done = Outcome(job_id=lease.job.id, token=lease.token, kind=kind)
        assert self.call(self.broker.settle([done])) == [True]
        if kind is OutcomeKind.RELEASE:
            self.attempts[lease.job.id] -= 1
        if kind in (OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.DEAD_LETTER):
            self.done.add(lease.job.id)

    @rule(worker=st.integers(0, WORKERS - 1))
    def die(self, worker: int) -> None:
        """kill -9: the worker's leases run out (extended to now), nobody settles them."""
        if self.held[worker]:
            self.call(self.broker.extend(self.held[worker], lease=0.0))
        self.orphans += self.held[worker]
        self.held[worker] = []

    @rule(worker=st.integers(0, WORKERS - 1))
    def reclaim(self, worker: int) -> None:
        got = self.call(self.broker.reclaim([Q], lease=LONG))
        assert sorted(x.job.id for x in got) == sorted(x.job.id for x in self.orphans)
        self.orphans = []
        self.held[worker] += got  # still running: they keep their slots until settled

    @rule(name=st.sampled_from(["ex", "g"]), concurrency=st.integers(0, 3))
    def change_limit(self, name: str, concurrency: int) -> None:
        self.call(self.broker.set_limits({name: LimitSpec(concurrency=concurrency)}))
        self.limits[name] = concurrency

    @invariant()
    def slots_match_the_leases(self) -> None:
        for name in ("ex", "g"):
            usage = self.call(self.broker.limit_usage(name))
            running = {k: n for k, n in self.running().items() if k.partition(":")[0] == name}
            assert usage.running == running, (name, usage.running, running)

    def teardown(self) -> None:
        try:
            self.drain()
        finally:
            self.call(self.clean())

    def drain(self) -> None:
        """Settle what runs, then drain under limits of 1 (no worker dies now): every job ends,
        so no job is stuck in a line while a slot is free, and every slot and line empties."""
        self.reclaim(0)
        leases = [x for w in self.held for x in w]
        self.held = [[] for _ in range(WORKERS)]
        self.call(self.broker.set_limits({"ex": LimitSpec(concurrency=1),
                                          "g": LimitSpec(concurrency=1)}))  # fmt: skip
        for _ in range(len(self.keys) + 1):
            done = [Outcome(job_id=x.job.id, token=x.token, kind=OutcomeKind.COMPLETE)
                    for x in leases]  # fmt: skip
            if done:
                self.call(self.broker.settle(done))
            leases = self.call(self.broker.reserve([Q], count=50, lease=LONG, timeout=0))
            if not leases:
                break
        for job_id in self.keys:
            job = self.call(self.broker.get(job_id))
            assert job is not None, job_id  # no job lost
            assert job.status in FINISHED, (job_id, job.status)
        for name in ("ex", "g"):
            usage = self.call(self.broker.limit_usage(name))
            assert usage.running == {}
            assert usage.waiting == {}

    async def clean(self) -> None:
        await self.broker.close()
        if self.kind == "redis":
            client = redis.asyncio.Redis.from_url(self.redis_url)
            keys = [k async for k in client.scan_iter(match="{" + self.prefix + "}*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


@pytest.mark.parametrize("kind", ["memory", SHARDED_MEMORY, "sqlite", "redis"])
def test_limits_hold_under_workers_dying_and_limits_changing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        LimitsMachine.portal = portal
        LimitsMachine.kind = kind
        LimitsMachine.directory = tmp_path
        if kind == "redis":
            LimitsMachine.redis_url = request.getfixturevalue("redis_url")
        run_state_machine_as_test(
            LimitsMachine,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[p for p in Phase if p is not Phase.shrink],
            ),
        )
