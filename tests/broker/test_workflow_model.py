"""A Hypothesis state machine drives workflows through a broker: random DAGs of chains, groups
and chords (``_workflow_model``), enqueued in one call, then workers reserve, settle (every
kind), settle again (a lost reply: same token, same kind) or late (a stale token), die (their
leases expire) and reclaim; nodes and whole workflows are cancelled, dead letters requeued, new
dependents added to running workflows, and time passes. After every step every node is where
the model says (the job, and its node in the workflow record: ``_workflow_checks``), and at
the end everything is driven to an end.

Invariants: every node reaches a final state; no job is released (nor leased) before all its
parents ended; a node with parents is leased for its first attempt at most once, and never
twice at a time; a node that did not run ended FAILED or CANCELLED with the reason the broker
contract gives; ``workflow_results`` of a released node's parents are in ``after.jobs`` order
and equal to each parent's result; ``workflow()`` agrees with ``get()`` for nodes that have
not ended.

Runs on the memory broker (fake clock), the SQLite broker (a file of its own per example, fake
clock), a sharded broker of three memory brokers (every workflow
lives in one shard, the plain jobs it adopts with it: the same invariants hold), real Redis and
fakeredis, with a fixed seed and a few examples each (``WORKFLOW_MODEL_EXAMPLES`` and
``WORKFLOW_MODEL_STEPS`` raise them; with ``WORKFLOW_MODEL_RANDOM=1`` each run draws new
examples instead of the fixed ones). Rules that end much at once (``cancel``,
``cancel_workflow``) act on a fraction of their draws, and ``run_one`` (a reserve and a settle
in one step) fails jobs as often as it completes them, so that most examples reach deep
cascades before the teardown completes what is left.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.from_thread
import pytest
import redis.asyncio
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.broker.redis import RedisBroker
from taskit.broker.sqlite import SqliteBroker
from taskit.clock import FakeClock
from taskit.dependencies import IfFailed
from taskit.job import JobStatus, Lease, LeaseState, Outcome, OutcomeKind
from tests.broker._sharded import SHARDED_MEMORY, memory_shards
from tests.broker._workflow_checks import Checks
from tests.broker._workflow_model import (
    DEFERRED,
    QUEUES,
    READY,
    RUNNING,
    SHAPES,
    TRAITS,
    Compiler,
    Model,
    Shape,
    outcome_for,
    restated,
)

T = TypeVar("T")
LONG = 300.0
WORKERS = 2
EXAMPLES = int(os.environ.get("WORKFLOW_MODEL_EXAMPLES", "0"))
STEPS = int(os.environ.get("WORKFLOW_MODEL_STEPS", "40"))
#: Examples per broker kind in the default (fast) profile.
DEFAULT_EXAMPLES = {"memory": 12, "sqlite": 6, SHARDED_MEMORY: 4, "redis": 4, "fakeredis": 1}
KINDS = list(OutcomeKind)
#: What ``run_one`` settles with: ends that fail, and so cascade, as often as completions.
RUN_KINDS = [OutcomeKind.COMPLETE, OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.DEAD_LETTER,
             OutcomeKind.RETRY, OutcomeKind.CANCEL, OutcomeKind.RELEASE]  # fmt: skip


class WorkflowMachine(Checks, RuleBasedStateMachine):
    """The rules; what is checked after each is ``Checks`` (``_workflow_checks``)."""

    portal: anyio.from_thread.BlockingPortal
    kind: str
    redis_url: str
    tmp: Path  # the sqlite kind's directory

    def __init__(self) -> None:
        super().__init__()
        self.broker: Broker
        self.clock = FakeClock()
        self.prefix = f"taskit-wf-model-{uuid.uuid4().hex[:10]}"
        self.delay = 1.0  # a delayed job's delay; time passes by ``delay / 2`` a step
        if self.kind == "memory":
            self.broker = MemoryBroker(clock=self.clock, result_ttl=3600.0)
        elif self.kind == "sqlite":
            path = self.tmp / f"{self.prefix}.sqlite3"
            self.broker = SqliteBroker(path, clock=self.clock, result_ttl=3600.0)
        elif self.kind == SHARDED_MEMORY:
            self.broker = memory_shards(self.clock, result_ttl=3600.0)
        elif self.kind == "redis":
            self.delay = 0.05  # real time on a real server
            self.broker = RedisBroker(self.redis_url, prefix=self.prefix, result_ttl=3600.0)
        else:
            import fakeredis

            from taskit.broker.redis.transport.redispy import over

            server = fakeredis.FakeServer()
            self.delay = 0.05
            self.broker = RedisBroker(
                prefix=self.prefix, result_ttl=3600.0,
                connect=over(lambda: fakeredis.FakeAsyncRedis(server=server)),
            )  # fmt: skip
        self.model = Model()
        self.held: list[list[Lease]] = [[] for _ in range(WORKERS)]
        self.orphans: list[Lease] = []  # leases of dead workers, expired, not reclaimed yet
        self.dead_tokens: list[Lease] = []  # leases taken over by a reclaim: stale for good
        # Applied settles: the outcome, the node's snapshot after it, and its lease count then.
        self.settled: list[tuple[Outcome, tuple[object, ...], int]] = []

    def call(self, awaitable: Awaitable[T]) -> T:
        async def run() -> T:
            return await awaitable

        return self.portal.call(run)

    # -- building ----------------------------------------------------------------------------
    @initialize(
        shapes=st.lists(SHAPES, min_size=1, max_size=2),
        traits=st.lists(TRAITS, min_size=1, max_size=12),
    )
    def enqueue_workflows(
        self, shapes: list[Shape], traits: list[tuple[IfFailed, int, bool, bool]]
    ) -> None:
        compiler = Compiler(traits, self.delay)
        for i, shape in enumerate(shapes):  # ids the same in every run: examples replay
            compiler.compile(shape, f"wf{i}", [])
        jobs = [p.job for p in compiler.planned]
        stored = self.call(self.broker.enqueue(jobs, delays=[p.delay for p in compiler.planned]))
        assert [j.id for j in stored] == [j.id for j in jobs]
        for job, got in zip(jobs, stored, strict=True):
            node = self.model.add(job)
            self.assert_status(node, got.status)

    @rule(pick=st.integers(0, 10_000), parents=st.integers(1, 3), fail=st.sampled_from(IfFailed))
    def add_dependent(self, pick: int, parents: int, fail: IfFailed) -> None:
        """A job enqueued into a running (or ended) workflow, waiting for nodes already in it,
        some of which may have ended."""
        workflows = sorted(self.model.workflows)
        workflow = workflows[pick % len(workflows)]
        ids = self.model.workflows[workflow]
        chosen = [ids[(pick // 7 + i * 3) % len(ids)] for i in range(parents)]
        compiler = Compiler([(fail, pick % 2, False, bool(pick % 3))], 0.0, f"late{len(ids)}-")
        compiler.job(workflow, list(dict.fromkeys(chosen)), if_failed=fail)
        job = compiler.planned[0].job
        [got] = self.call(self.broker.enqueue([job]))
        node = self.model.add(job)
        self.assert_status(node, got.status)
        event(f"late dependent: {node.status}")

    # -- working -----------------------------------------------------------------------------
    @rule(worker=st.integers(0, WORKERS - 1), count=st.integers(1, 3))
    def reserve(self, worker: int, count: int) -> None:
        got = self.call(self.broker.reserve(list(QUEUES), count=count, lease=LONG, timeout=0))
        for lease in got:
            node = self.model.nodes[lease.job.id]
            assert node.status == READY, (node.id, node.status)  # never two live leases
            assert not node.waiting, (node.id, node.waiting)
            assert lease.job.attempts == node.attempts + 1, (node.id, lease.job.attempts)
            assert lease.job.after == node.job.after
            assert lease.job.workflow == node.job.workflow
            node.status, node.attempts = RUNNING, node.attempts + 1
            node.leases += 1
            if node.after:
                event("leased a node with parents")
            if node.attempts == 1 and node.after and node.ended_as is None:
                node.first_runs += 1
                assert node.first_runs == 1, (node.id, "released twice")
            self.check_fed(node)
        self.held[worker] += got

    @rule(worker=st.integers(0, WORKERS - 1), kind=st.sampled_from(RUN_KINDS), later=st.booleans())
    def run_one(self, worker: int, kind: OutcomeKind, later: bool) -> None:
        """The common path in one step: a worker takes a job and settles it at once."""
        before = len(self.held[worker])
        self.reserve(worker, 1)
        if len(self.held[worker]) > before:
            self.settle(worker, len(self.held[worker]) - 1, kind, later)

    @rule(
        worker=st.integers(0, WORKERS),  # WORKERS: an orphan (a lease past its deadline)
        pick=st.integers(0, 100),
        kind=st.sampled_from(KINDS),
        later=st.booleans(),
    )
    def settle(self, worker: int, pick: int, kind: OutcomeKind, later: bool) -> None:
        pool = self.orphans if worker == WORKERS else self.held[worker]
        if not pool:
            return
        lease = pool.pop(pick % len(pool))
        done = outcome_for(lease, kind, self.delay if later else 0.0)
        assert self.call(self.broker.settle([done])) == [True], (lease.job.id, kind)
        node = self.model.settled(done)
        self.settled.append((done, node.snapshot(), node.leases))

    @rule(pick=st.integers(0, 1000))
    def settle_again(self, pick: int) -> None:
        """The same outcome sent again (its reply was lost): True while the job has not changed
        since (nothing applies twice); False once it was leased anew."""
        if not self.settled:
            return  # no precondition: on Redis, time is real, and a replay may differ
        done, snapshot, leases = self.settled[pick % len(self.settled)]
        node = self.model.nodes[done.job_id]
        [answer] = self.call(self.broker.settle([done]))
        event(f"settled again: {answer}")
        if node.leases != leases:
            assert answer is False, (node.id, done.kind, "after a new lease")
        elif node.snapshot() == snapshot:
            assert answer is True, (node.id, done.kind, "a retried settle")

    @rule(pick=st.integers(0, 1000), kind=st.sampled_from(KINDS))
    def settle_stale(self, pick: int, kind: OutcomeKind) -> None:
        """A token taken over by a reclaim, or a settled token with another kind: stale."""
        stale = [outcome_for(x, kind, 0.0) for x in self.dead_tokens]
        stale += [restated(done, kind) for done, _, _ in self.settled if done.kind is not kind]
        if not stale:
            return
        assert self.call(self.broker.settle([stale[pick % len(stale)]])) == [False]

    @rule(worker=st.integers(0, WORKERS - 1))
    def die(self, worker: int) -> None:
        """kill -9: the worker's leases run out (extended to now), nobody settles them."""
        if self.held[worker]:
            states = self.call(self.broker.extend(self.held[worker], lease=0.0))
            for lease, state in zip(self.held[worker], states, strict=True):
                node = self.model.nodes[lease.job.id]
                want = LeaseState.CANCELLED if node.cancel_requested else LeaseState.HELD
                assert state is want, (node.id, state)
        self.orphans += self.held[worker]
        self.held[worker] = []

    @rule(worker=st.integers(0, WORKERS - 1))
    def reclaim(self, worker: int) -> None:
        got = self.call(self.broker.reclaim(list(QUEUES), lease=LONG))
        nodes = {x.job.id: self.model.nodes[x.job.id] for x in self.orphans}
        taken = sorted(i for i, n in nodes.items() if not n.cancel_requested)
        assert sorted(x.job.id for x in got) == taken
        for job_id, node in nodes.items():
            if node.cancel_requested:  # a reclaimed job whose cancel was requested ends
                self.model.end(job_id, JobStatus.CANCELLED)
        for lease in got:
            node = nodes[lease.job.id]
            assert lease.job.attempts == node.attempts
            node.leases += 1
        self.dead_tokens += self.orphans
        self.orphans = []
        self.held[worker] += got

    # -- cancelling and admin ----------------------------------------------------------------
    @rule(pick=st.integers(0, 10_000))
    def cancel(self, pick: int) -> None:
        if pick % 3:
            return  # a third as often as the other rules: it ends a node and its dependents
        ids = sorted(self.model.nodes)
        node = self.model.nodes[ids[pick // 3 % len(ids)]]
        answer = self.call(self.broker.cancel(node.id))
        assert answer is (not isinstance(node.status, JobStatus)), (node.id, node.status)
        if node.status == RUNNING:
            node.cancel_requested = True
        elif node.status in (READY, DEFERRED):
            self.model.cancel_waiting(node.id)

    @rule(pick=st.integers(0, 15))
    def cancel_workflow(self, pick: int) -> None:
        if pick > 1:
            return  # rare: it ends a whole workflow
        workflows = sorted(self.model.workflows)
        workflow = workflows[pick % len(workflows)]
        low, high = self.model.cancel_workflow(workflow)
        count = self.call(self.broker.cancel_workflow(workflow))
        assert low <= count <= high, (workflow, count, low, high)

    @rule(pick=st.integers(0, 10_000))
    def requeue_dead(self, pick: int) -> None:
        """A dead letter made PENDING again: its workflow keeps the node's first end."""
        dead = sorted(n.id for n in self.model if n.status is JobStatus.DEAD_LETTER)
        if not dead:
            return
        node = self.model.nodes[dead[pick % len(dead)]]
        assert self.call(self.broker.requeue_dead(node.job.queue, [node.id])) == 1
        node.status, node.attempts, node.cancel_requested = READY, 0, False

    @rule()
    def advance(self) -> None:
        self.pass_time(self.delay / 2)

    def pass_time(self, seconds: float) -> None:
        if self.kind in ("memory", "sqlite", SHARDED_MEMORY):
            self.clock.advance(seconds)
        else:
            self.call(anyio.sleep(seconds))

    @invariant()
    def broker_agrees_with_the_model(self) -> None:
        self.agree()

    # -- the end -----------------------------------------------------------------------------
    def teardown(self) -> None:
        try:
            self.drive_to_the_end()
        finally:
            self.call(self.clean())

    def drive_to_the_end(self) -> None:
        """No worker dies now: reclaim what the dead left, complete every lease, and run what
        is released until nothing is left. Every node has then ended, in the broker as in the
        model, and every workflow is finished."""
        self.reclaim(0)
        for _ in range(4 * len(self.model.nodes) + 20):
            for worker in range(WORKERS):
                while self.held[worker]:
                    self.settle(worker, 0, OutcomeKind.COMPLETE, False)
            self.resolve_open()  # invariants do not run between these calls
            if not self.model.ready_ids():
                break
            self.pass_time(self.delay)
            self.reserve(0, 50)
        assert self.model.ready_ids() == [], self.model.ready_ids()
        self.check_never_ran()
        self.broker_agrees_with_the_model()
        for workflow in self.model.workflows:
            state = self.call(self.broker.workflow(workflow))
            assert state is not None, workflow
            assert state.finished, workflow
            assert all(n.ended for n in state.nodes), workflow

    async def clean(self) -> None:
        await self.broker.close()
        if self.kind == "redis":
            client = redis.asyncio.Redis.from_url(self.redis_url)
            assert isinstance(self.broker, RedisBroker)
            keys = [k async for k in client.scan_iter(match=self.broker.keys.pattern())]
            if keys:
                await client.delete(*keys)
            await client.aclose()


@pytest.mark.parametrize("kind", ["memory", "sqlite", SHARDED_MEMORY, "redis", "fakeredis"])
def test_every_workflow_node_ends_and_every_callback_runs_once_at_most(
    kind: str, request: pytest.FixtureRequest
) -> None:
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        WorkflowMachine.portal = portal
        WorkflowMachine.kind = kind
        if kind == "redis":
            WorkflowMachine.redis_url = request.getfixturevalue("redis_url")
        if kind == "sqlite":
            WorkflowMachine.tmp = request.getfixturevalue("tmp_path")
        run_state_machine_as_test(
            WorkflowMachine,
            settings=settings(
                max_examples=EXAMPLES or DEFAULT_EXAMPLES[kind],
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=os.environ.get("WORKFLOW_MODEL_RANDOM") != "1",
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[p for p in Phase if p is not Phase.shrink],
            ),
        )
