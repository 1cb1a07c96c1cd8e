"""Catalogue row 18: a Hypothesis state machine drives the Redis broker (real server), the
memory broker and the SQLite broker (a file of its own per run) through enqueue, reserve,
extend, ack, retry, dead-letter, expire, reclaim, stale acks and cancel, and checks all three
against a plain model after every step: each job's status and
attempts, every answer, and that the counts add up.

The same machine drives a sharded broker of three memory brokers (``ShardedBroker``), alone,
against the model as the sharded broker states it: a reserve takes ``count`` jobs when that many
are ready, each once, and each shard's jobs in the model's order (across shards the rotation
decides, so the model follows what was taken); every other check is the same.

Short mode: a fixed seed (``derandomize``), a few dozen runs; no example database is written
(``database=None``). ``python -m tests.chaos`` runs it with many more examples.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
import redis.asyncio
from hypothesis import HealthCheck, Phase, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.broker.placement import shard_of
from taskit.broker.redis import RedisBroker
from taskit.broker.sqlite import SqliteBroker
from taskit.clock import FakeClock
from taskit.job import Job, JobStatus, Lease, LeaseState, Outcome, OutcomeKind, encode_arguments
from tests.broker._sharded import memory_shards

pytestmark = pytest.mark.redis

IDS = [f"j{i}" for i in range(6)]
SETTLE_KINDS = [
    OutcomeKind.COMPLETE,
    OutcomeKind.RETRY,
    OutcomeKind.DEAD_LETTER,
    OutcomeKind.RELEASE,
]
Q = "q"
LONG = 300.0
#: Examples per run; the long mode raises it through the environment.
EXAMPLES = int(os.environ.get("CHAOS_MODEL_EXAMPLES", "15"))
STEPS = int(os.environ.get("CHAOS_MODEL_STEPS", "40"))
#: Shrinking against a real server can take minutes: the long mode does it, CI reports the
#: unshrunk failing steps at once.
SHRINK = os.environ.get("CHAOS_MODEL_SHRINK") == "1"


@dataclass
class Model:
    """What a correct broker holds: per job its status, attempts, FIFO place, cancel flag."""

    status: dict[str, JobStatus] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    cancel: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)
    next_seq: int = 0

    def of(self, status: JobStatus) -> list[str]:
        return [i for i, s in self.status.items() if s is status]

    def ready(self) -> list[str]:
        return sorted(self.of(JobStatus.PENDING), key=self.seq.__getitem__)


class BrokerMachine(RuleBasedStateMachine):
    portal: anyio.from_thread.BlockingPortal
    #: The real server's URL, or None: the machine drives one sharded memory broker instead.
    redis_url: str | None

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.redis: RedisBroker | None = None
        self.files: tempfile.TemporaryDirectory[str] | None = None
        self.brokers: tuple[Broker, ...]
        self.shards = 1  # of the brokers driven: a sharded one's count
        if self.redis_url is None:
            sharded = memory_shards(self.clock, result_ttl=LONG)
            self.brokers, self.shards = (sharded,), sharded.count
        else:
            prefix = f"taskit-model-{uuid.uuid4().hex[:10]}"
            self.redis = RedisBroker(self.redis_url, prefix=prefix, result_ttl=LONG)
            self.files = tempfile.TemporaryDirectory(prefix="taskit-model-")
            sqlite = SqliteBroker(
                Path(self.files.name) / "jobs.db", clock=self.clock, result_ttl=LONG
            )
            self.brokers = (self.redis, MemoryBroker(clock=self.clock, result_ttl=LONG), sqlite)
        self.model = Model()
        # job id -> each broker's lease for the jobs running now; old tokens kept apart.
        self.held: dict[str, tuple[Lease, ...]] = {}
        self.stale: list[tuple[Lease, ...]] = []
        #: The kind each settled lease was settled with (by its first broker's token): the same
        #: outcome sent again is an idempotent retry (answered True), not a stale ack.
        self.applied: dict[str, OutcomeKind] = {}

    # -- plumbing --------------------------------------------------------------------------
    def both(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Each broker's answer to the same call."""
        return tuple(
            self.portal.call(lambda b=b: getattr(b, name)(*args, **kwargs)) for b in self.brokers
        )

    def settle(self, job_id: str, kind: OutcomeKind, *, stale: bool = False) -> tuple[bool, ...]:
        pair = self.stale[-1] if stale else self.held[job_id]
        return tuple(
            self.portal.call(
                b.settle, [Outcome(job_id=lease.job.id, token=lease.token, kind=kind, error="e")]
            )[0]
            for b, lease in zip(self.brokers, pair, strict=True)
        )

    def each(self, answer: object) -> tuple[object, ...]:
        """``answer`` once per broker driven."""
        return (answer,) * len(self.brokers)

    def teardown(self) -> None:
        async def clean() -> None:
            if self.redis is not None:
                pattern = self.redis.keys.pattern()
                client = redis.asyncio.Redis.from_url(str(self.redis_url))
                doomed = [k async for k in client.scan_iter(match=pattern, count=500)]
                if doomed:
                    await client.delete(*doomed)
                await client.aclose()
            for broker in self.brokers:
                await broker.close()

        self.portal.call(clean)
        if self.files is not None:
            self.files.cleanup()

    # -- rules -----------------------------------------------------------------------------
    @rule(job_id=st.sampled_from(IDS), later=st.booleans())
    def enqueue(self, job_id: str, later: bool) -> None:
        job = Job(id=job_id, task="t", queue=Q, payload=encode_arguments((1,), {}),
                  created_at=datetime.now(UTC), max_retries=1)  # fmt: skip
        got = self.both("enqueue", [job], delays=[LONG if later else 0.0])
        m = self.model
        current = m.status.get(job_id)
        if current is None or current.finished:
            m.status[job_id] = JobStatus.SCHEDULED if later else JobStatus.PENDING
            m.attempts[job_id] = 0
            m.next_seq += 1
            m.seq[job_id] = m.next_seq
            m.cancel.discard(job_id)
            m.expired.discard(job_id)
        for stored in got:
            assert stored[0].id == job_id
            assert stored[0].status is m.status[job_id]

    @rule(count=st.integers(1, 3))
    def reserve(self, count: int) -> None:
        got = self.both("reserve", [Q], count=count, lease=LONG, timeout=0)
        ready = self.model.ready()
        for leases in got:
            taken = [h.job.id for h in leases]
            if self.shards == 1:
                assert taken == ready[:count]
                continue
            # Sharded: count when that many are ready, each once; each shard's in its order.
            assert len(taken) == len(set(taken)) == min(count, len(ready)), (taken, ready)
            for k in range(self.shards):
                mine = [i for i in ready if shard_of(i, self.shards) == k]
                took = [i for i in taken if shard_of(i, self.shards) == k]
                assert took == mine[: len(took)], (k, took, mine)
        for leases in zip(*got, strict=True):
            job_id = leases[0].job.id
            assert all(lease.job.id == job_id for lease in leases), leases
            self.model.status[job_id] = JobStatus.RUNNING
            self.model.attempts[job_id] += 1
            assert all(lease.job.attempts == self.model.attempts[job_id] for lease in leases)
            self.held[job_id] = leases

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def extend(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        answers = tuple(
            self.portal.call(lambda b=b, held=held: b.extend([held], lease=LONG))
            for b, held in zip(self.brokers, self.held[job_id], strict=True)
        )
        want = LeaseState.CANCELLED if job_id in self.model.cancel else LeaseState.HELD
        assert answers == self.each([want])
        self.model.expired.discard(job_id)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), kind=st.sampled_from(SETTLE_KINDS))
    def settle_held(self, data: st.DataObject, kind: OutcomeKind) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        assert self.settle(job_id, kind) == self.each(True)
        m = self.model
        if job_id in m.cancel and kind in (OutcomeKind.RETRY, OutcomeKind.RELEASE):
            m.status[job_id] = JobStatus.CANCELLED
        elif kind is OutcomeKind.COMPLETE:
            m.status[job_id] = JobStatus.COMPLETED
        elif kind is OutcomeKind.DEAD_LETTER:
            m.status[job_id] = JobStatus.DEAD_LETTER
        else:  # retry at once or release: the front of the queue, later ones first
            m.status[job_id] = JobStatus.PENDING
            m.next_seq += 1
            m.seq[job_id] = -m.next_seq
            if kind is OutcomeKind.RELEASE:
                m.attempts[job_id] -= 1
        m.cancel.discard(job_id)
        m.expired.discard(job_id)
        self.applied[self.held[job_id][0].token] = kind
        self.stale.append(self.held.pop(job_id))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        """The holder stops extending: its lease runs out (a zero-second extend)."""
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        for b, held in zip(self.brokers, self.held[job_id], strict=True):
            self.portal.call(lambda b=b, held=held: b.extend([held], lease=0.0))
        self.model.expired.add(job_id)

    @rule()
    def reclaim(self) -> None:
        self.clock.advance(0.001)
        got = self.both("reclaim", [Q], lease=LONG)
        m = self.model
        back = sorted(i for i in m.expired if i not in m.cancel)
        for leases in got:
            assert sorted(h.job.id for h in leases) == back
        for job_id in m.expired:
            self.stale.append(self.held.pop(job_id))
            if job_id in m.cancel:  # a cancelled job whose lease ran out ends CANCELLED
                m.status[job_id] = JobStatus.CANCELLED
                m.cancel.discard(job_id)
        m.expired.clear()
        by_id = [{h.job.id: h for h in leases} for leases in got]
        for job_id in back:
            leases = tuple(each[job_id] for each in by_id)
            assert all(lease.job.attempts == m.attempts[job_id] for lease in leases), job_id
            self.held[job_id] = leases

    @precondition(lambda self: self.stale)
    @rule(kind=st.sampled_from([OutcomeKind.COMPLETE, OutcomeKind.RETRY, OutcomeKind.FAIL]))
    def stale_ack(self, kind: OutcomeKind) -> None:
        job_id = self.stale[-1][0].job.id
        # The outcome its lease was settled with, sent again, is a retry after a lost reply:
        # answered True by contract (``Broker.settle``), so only another kind is stale here.
        assume(self.applied.get(self.stale[-1][0].token) is not kind)
        assert self.settle(job_id, kind, stale=True) == self.each(False)  # fenced: no change

    @rule(job_id=st.sampled_from(IDS))
    def cancel(self, job_id: str) -> None:
        got = self.both("cancel", job_id)
        m = self.model
        status = m.status.get(job_id)
        if status is None or status.finished:
            want = False
        elif status is JobStatus.RUNNING:
            want = True
            m.cancel.add(job_id)
        else:
            want = True
            m.status[job_id] = JobStatus.CANCELLED
        assert got == self.each(want)

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def agree_with_the_model(self) -> None:
        for job_id in IDS:
            jobs = self.both("get", job_id)
            want = self.model.status.get(job_id)
            for job in jobs:
                assert (job.status if job else None) is want, (job_id, job, want)
                if job is not None:
                    assert job.attempts == self.model.attempts[job_id], job_id

    @invariant()
    def counts_add_up(self) -> None:
        m = self.model
        for stats in self.both("stats", [Q]):
            s = stats[Q]
            assert s.queued == len(m.of(JobStatus.PENDING))
            assert s.scheduled == len(m.of(JobStatus.SCHEDULED))
            assert s.running == len(m.of(JobStatus.RUNNING)) == len(self.held)
            assert s.dead == len(m.of(JobStatus.DEAD_LETTER))


def test_row18_redis_memory_and_sqlite_brokers_agree_with_the_model(redis_url: str) -> None:
    run(redis_url, EXAMPLES)


def test_row18_a_sharded_broker_agrees_with_the_model() -> None:
    run(None, EXAMPLES)


def run(redis_url: str | None, examples: int) -> None:
    """The machine on Redis and memory (``redis_url``), or on a sharded memory broker (None)."""
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        BrokerMachine.portal = portal
        BrokerMachine.redis_url = redis_url
        run_state_machine_as_test(
            BrokerMachine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=True,  # a fixed seed in CI
                database=None,  # no .hypothesis/ directory in the repo
                suppress_health_check=list(HealthCheck),
                phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
            ),
        )
