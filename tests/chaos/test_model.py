"""Catalogue row 18: a Hypothesis state machine drives the Redis broker (real server) and the
memory broker through enqueue, reserve, extend, ack, retry, dead-letter, expire, reclaim, stale
acks and cancel, and checks both against a plain model after every step: each job's status and
attempts, every answer, and that the counts add up.

Short mode: a fixed seed (``derandomize``), a few dozen runs; no example database is written
(``database=None``). ``python -m tests.chaos`` runs it with many more examples.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio.from_thread
import pytest
import redis.asyncio
from hypothesis import HealthCheck, Phase, settings
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
from taskit.broker.redis import RedisBroker
from taskit.clock import FakeClock
from taskit.job import Job, JobStatus, Lease, LeaseState, Outcome, OutcomeKind, encode_arguments

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
    redis_url: str

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.redis = RedisBroker(self.redis_url, prefix=f"taskit-model-{uuid.uuid4().hex[:10]}",
                                 result_ttl=LONG)  # fmt: skip
        self.memory = MemoryBroker(clock=self.clock, result_ttl=LONG)
        self.model = Model()
        # job id -> (redis lease, memory lease) for the jobs running now; old tokens kept apart.
        self.held: dict[str, tuple[Lease, Lease]] = {}
        self.stale: list[tuple[Lease, Lease]] = []

    # -- plumbing --------------------------------------------------------------------------
    def both(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        brokers: tuple[Broker, Broker] = (self.redis, self.memory)
        return tuple(  # type: ignore[return-value]
            self.portal.call(lambda b=b: getattr(b, name)(*args, **kwargs)) for b in brokers
        )

    def settle(self, job_id: str, kind: OutcomeKind, *, stale: bool = False) -> tuple[bool, bool]:
        pair = self.stale[-1] if stale else self.held[job_id]
        return tuple(  # type: ignore[return-value]
            self.portal.call(
                b.settle, [Outcome(job_id=lease.job.id, token=lease.token, kind=kind, error="e")]
            )[0]
            for b, lease in zip((self.redis, self.memory), pair, strict=True)
        )

    def teardown(self) -> None:
        async def clean() -> None:
            pattern = self.redis.keys.pattern()
            client = redis.asyncio.Redis.from_url(self.redis_url)
            doomed = [k async for k in client.scan_iter(match=pattern, count=500)]
            if doomed:
                await client.delete(*doomed)
            await client.aclose()
            await self.redis.close()

        self.portal.call(clean)

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
        expected = self.model.ready()[:count]
        for leases in got:
            assert [h.job.id for h in leases] == expected
        for r_lease, m_lease in zip(*got, strict=True):
            job_id = r_lease.job.id
            self.model.status[job_id] = JobStatus.RUNNING
            self.model.attempts[job_id] += 1
            assert r_lease.job.attempts == m_lease.job.attempts == self.model.attempts[job_id]
            self.held[job_id] = (r_lease, m_lease)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def extend(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        r, m = self.held[job_id]
        answers = (self.portal.call(lambda: self.redis.extend([r], lease=LONG)),
                   self.portal.call(lambda: self.memory.extend([m], lease=LONG)))  # fmt: skip
        want = LeaseState.CANCELLED if job_id in self.model.cancel else LeaseState.HELD
        assert answers == ([want], [want])
        self.model.expired.discard(job_id)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), kind=st.sampled_from(SETTLE_KINDS))
    def settle_held(self, data: st.DataObject, kind: OutcomeKind) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        assert self.settle(job_id, kind) == (True, True)
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
        self.stale.append(self.held.pop(job_id))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        """The holder stops extending: its lease runs out (a zero-second extend)."""
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        r, m = self.held[job_id]
        self.portal.call(lambda: self.redis.extend([r], lease=0.0))
        self.portal.call(lambda: self.memory.extend([m], lease=0.0))
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
        by_id = {h.job.id: h for h in got[1]}
        for lease in got[0]:
            assert (
                lease.job.attempts == by_id[lease.job.id].job.attempts == m.attempts[lease.job.id]
            )
            self.held[lease.job.id] = (lease, by_id[lease.job.id])

    @precondition(lambda self: self.stale)
    @rule(kind=st.sampled_from([OutcomeKind.COMPLETE, OutcomeKind.RETRY, OutcomeKind.FAIL]))
    def stale_ack(self, kind: OutcomeKind) -> None:
        job_id = self.stale[-1][0].job.id
        assert self.settle(job_id, kind, stale=True) == (False, False)  # fenced: nothing changes

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
        assert got == (want, want)

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


def test_row18_redis_and_memory_brokers_agree_with_the_model(redis_url: str) -> None:
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        BrokerMachine.portal = portal
        BrokerMachine.redis_url = redis_url
        run_state_machine_as_test(
            BrokerMachine,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=True,  # a fixed seed in CI
                database=None,  # no .hypothesis/ directory in the repo
                suppress_health_check=list(HealthCheck),
                phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
            ),
        )
