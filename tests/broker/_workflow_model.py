"""The model behind ``test_workflow_model.py``: random workflow shapes, and what the broker
contract says each node of them must become after each action.

Shapes are canvas trees (a leaf job, a chain, a group, a chord: a group then one callback that
waits for every member) compiled into jobs the way ``taskit.canvas`` builds them: a step of a
chain waits for the last nodes (the sinks) of the step before it. Each job draws its own
``if_failed``, queue, whether it is delayed, and whether it is fed its parents' results.

The model (``Model``) keeps, per node, the job's status as a worker sees it (``deferred``,
``ready``: PENDING, SCHEDULED or RETRYING, ``running``, or a final status) apart from the
workflow's view of it (``ended_as``: the first end, which a requeued dead letter never changes),
and applies the rules of the broker contract (taskit/broker/base.py, "Workflows"): a first end
cascades to the jobs waiting for it (one parent fewer, released at none; or ended FAILED /
CANCELLED with the exact reason). Where the contract
leaves a choice, the node is marked ``open``: which parent a job ended by its parents names when
several ended without success in one step (a cascade may reach it through either; a late
dependent may find several ended), and whether ``cancel_workflow`` ends a waiting node by itself
or through its cancelled parent. After the step the test reads the broker's pick, checks it is
one of the choices (``Model.choices``, from the parents as they were picked: nodes are checked
in enqueue order, parents first) and fixes it into the model (``Model.fix``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import strategies as st

from taskit.dependencies import After, Feed, IfFailed
from taskit.job import (
    Job,
    JobResult,
    JobStatus,
    Lease,
    Outcome,
    OutcomeKind,
    encode_arguments,
    result_of,
)

QUEUES = ("wa", "wb")
DEFERRED, READY, RUNNING = "deferred", "ready", "running"
#: The broker statuses of a model node that is ``ready``.
READY_STATUSES = frozenset({JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING})
FAILURES = frozenset({JobStatus.FAILED, JobStatus.DEAD_LETTER})
#: (status, error_type, error) a node may have been ended with.
Ending = tuple[JobStatus, str | None, str | None]

# -- shapes ----------------------------------------------------------------------------------
Shape = tuple[Any, ...]  # ("leaf",) | ("chain", [Shape]) | ("group", [Shape]) | ("chord", [Shape])
LEAF: Shape = ("leaf",)


def _composite(kids: st.SearchStrategy[Shape]) -> st.SearchStrategy[Shape]:
    parts = st.lists(kids, min_size=2, max_size=3)
    return st.one_of(
        st.tuples(st.just("chain"), parts),
        st.tuples(st.just("group"), parts),
        st.tuples(st.just("chord"), st.lists(kids, min_size=1, max_size=4)),
    )


#: A chain, group or chord at the top (a lone job has no workflow worth the name).
SHAPES: st.SearchStrategy[Shape] = _composite(st.recursive(st.just(LEAF), _composite, max_leaves=6))
#: What one job draws: if_failed (FAIL twice as often: cascades), queue index, delayed, fed
#: (else feed NONE).
TRAITS = st.tuples(
    st.sampled_from([IfFailed.FAIL, IfFailed.FAIL, IfFailed.CONTINUE]),
    st.integers(0, 1),
    st.booleans(),
    st.booleans(),
)


@dataclass
class Planned:
    """One job of a compiled shape, and the delay it is enqueued with."""

    job: Job
    delay: float


class Compiler:
    """Turns shapes into jobs, taking each job's traits in turn from ``traits`` (cycled)."""

    def __init__(
        self, traits: list[tuple[IfFailed, int, bool, bool]], delay: float, tag: str = "n"
    ) -> None:
        self._traits = traits
        self._delay = delay
        self._tag = tag
        self._n = 0
        self.planned: list[Planned] = []
        self.created = datetime.now(UTC)

    def compile(self, shape: Shape, workflow: str, parents: list[str]) -> list[str]:
        """Add ``shape``'s jobs, its first ones waiting for ``parents``; its sinks."""
        kind = shape[0]
        if kind == "leaf":
            return [self.job(workflow, parents)]
        if kind == "chain":
            sinks = parents
            for part in shape[1]:
                sinks = self.compile(part, workflow, sinks)
            return sinks
        members = [s for part in shape[1] for s in self.compile(part, workflow, parents)]
        if kind == "group":
            return members
        return [self.job(workflow, members)]  # chord: the callback waits for every member

    def job(self, workflow: str, parents: list[str], if_failed: IfFailed | None = None) -> str:
        drawn_if_failed, queue, delayed, fed = self._traits[self._n % len(self._traits)]
        self._n += 1
        job_id = f"{workflow}-{self._tag}{self._n}"
        after = None
        if parents:
            feed = Feed.NONE
            if fed:
                feed = Feed.ONE if len(parents) == 1 else Feed.ALL
            after = After(tuple(parents), feed=feed, if_failed=if_failed or drawn_if_failed)
        job = Job(
            id=job_id,
            task="wf.node",
            queue=QUEUES[queue],
            payload=encode_arguments((job_id,), {}),
            created_at=self.created,
            workflow=workflow,
            after=after,
        )
        self.planned.append(Planned(job, self._delay if delayed else 0.0))
        return job_id


# -- outcomes ------------------------------------------------------------------------------
def outcome_for(lease: Lease, kind: OutcomeKind, delay: float) -> Outcome:
    """A worker's outcome of ``kind`` for ``lease``: a completion's value names the job and
    attempt; a failure, retry or dead letter names its kind and job in its error."""
    job_id, attempt = lease.job.id, lease.job.attempts
    if kind is OutcomeKind.COMPLETE:
        result = JobResult(success=True, value=f"{job_id}#{attempt}")
        return Outcome(job_id=job_id, token=lease.token, kind=kind, result=result)
    if kind in (OutcomeKind.FAIL, OutcomeKind.RETRY, OutcomeKind.DEAD_LETTER):
        return Outcome(
            job_id=job_id, token=lease.token, kind=kind, error=f"{kind.value} {job_id}",
            error_type="E", delay=delay,
        )  # fmt: skip
    return Outcome(job_id=job_id, token=lease.token, kind=kind)


def restated(done: Outcome, kind: OutcomeKind) -> Outcome:
    """An outcome of another ``kind`` under ``done``'s token (stale once ``done`` applied)."""
    return Outcome(job_id=done.job_id, token=done.token, kind=kind, error="late", error_type="E")


# -- the model -------------------------------------------------------------------------------
#: The outcomes that end a job, and how.
_ENDS = {
    OutcomeKind.COMPLETE: JobStatus.COMPLETED,
    OutcomeKind.FAIL: JobStatus.FAILED,
    OutcomeKind.DEAD_LETTER: JobStatus.DEAD_LETTER,
    OutcomeKind.CANCEL: JobStatus.CANCELLED,
}


def reason(parent: str, status: JobStatus, error: str | None) -> str:
    """The error of a job ended by its parent's end (the broker contract, "Workflows"), when
    the parent did not end so itself (``Model.dependency_ending``)."""
    text = f"waited for job {parent}, which ended {status.value}"
    return f"{text}: {error}" if error else text


@dataclass
class Node:
    job: Job  # as enqueued
    waiting: set[str]  # parents not ended yet
    status: str | JobStatus  # DEFERRED / READY / RUNNING, or the job's final status
    attempts: int = 0
    error: str | None = None
    error_type: str | None = None
    result: JobResult | None = None  # the job's own ``result`` field
    cancel_requested: bool = False
    ended_as: JobStatus | None = None  # the workflow's view: the first end
    wf_result: JobResult | None = None  # the node's result in the workflow record
    open: bool = False  # ended by a step that leaves the broker a choice (see the module)
    plain: Ending | None = None  # with ``open``: ended as ``cancel`` does is one of them
    leases: int = 0  # leases handed out (reserve, reclaim): a settle's token is of one of them
    first_runs: int = 0  # reserves of attempt 1 not refunded by a RELEASE, before its end

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def after(self) -> tuple[str, ...]:
        return self.job.after.jobs if self.job.after else ()

    @property
    def if_failed(self) -> IfFailed:
        return self.job.after.if_failed if self.job.after else IfFailed.FAIL

    def snapshot(self) -> tuple[Any, ...]:
        return (self.status, self.attempts, self.cancel_requested, self.ended_as, self.leases)

    def expected_result(self) -> JobResult:
        """``result_of`` of the node's job as it stands now (the broker contract: a node's
        result)."""
        assert isinstance(self.status, JobStatus)
        job = msgspec.structs.replace(
            self.job, status=self.status, error=self.error, error_type=self.error_type,
            result=self.result, traceback=None,
        )  # fmt: skip
        return result_of(job)


class Model:
    """Every node enqueued, in the order the workflows list them, and the rules of their ends."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.children: dict[str, list[str]] = {}
        self.workflows: dict[str, list[str]] = {}  # workflow id -> its node ids, in order

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def add(self, job: Job) -> Node:
        """A job just enqueued (its parents already in the model); applies ended parents."""
        assert job.workflow is not None
        node = Node(job, set(), READY)
        self.nodes[job.id] = node
        self.children[job.id] = []
        self.workflows.setdefault(job.workflow, []).append(job.id)
        failed: list[Node] = []
        for parent_id in node.after:
            parent = self.nodes[parent_id]
            self.children[parent_id].append(job.id)
            if parent.ended_as is None:
                node.waiting.add(parent_id)
            elif parent.ended_as is not JobStatus.COMPLETED and node.if_failed is IfFailed.FAIL:
                failed.append(parent)
        if failed:  # stored already ended, naming one of its failed parents
            node.status = DEFERRED
            status, node.error_type, node.error = self.dependency_ending(failed[0])
            node.open = True
            self.end(node.id, status)
        elif node.waiting:
            node.status = DEFERRED
        return node

    @staticmethod
    def dependency_ending(parent: Node) -> Ending:
        assert parent.ended_as is not None
        assert parent.wf_result is not None
        if parent.ended_as in FAILURES:
            status, error_type = JobStatus.FAILED, "DependencyFailed"
        else:
            status, error_type = JobStatus.CANCELLED, "DependencyCancelled"
        before = parent.wf_result
        if before.error_type == "DependencyFailed" and before.error:
            return status, error_type, before.error  # down a cascade: the failure that began it
        return status, error_type, reason(parent.id, parent.ended_as, before.error)

    def end(self, job_id: str, status: JobStatus) -> None:
        """The job ends ``status``; the first end is the workflow's, and cascades."""
        node = self.nodes[job_id]
        node.status = status
        if node.ended_as is not None:
            return  # a requeued dead letter ending again: the workflow keeps its first end
        node.ended_as = status
        node.wf_result = node.expected_result()
        for child_id in self.children[job_id]:
            child = self.nodes[child_id]
            if child.ended_as is not None:
                continue
            assert child.status == DEFERRED, (child_id, child.status)  # the model's own check
            child.waiting.discard(job_id)
            if status is JobStatus.COMPLETED or child.if_failed is IfFailed.CONTINUE:
                if not child.waiting:
                    child.status = READY
            else:
                ending = self.dependency_ending(node)
                child.status, child.error_type, child.error = ending
                child.open = True  # another parent ending in this step may be the one named
                self.end(child_id, ending[0])

    def settled(self, done: Outcome) -> Node:
        """Apply an outcome the broker applied (its token was current); the node."""
        node = self.nodes[done.job_id]
        kind = done.kind
        if node.cancel_requested and kind in (OutcomeKind.RETRY, OutcomeKind.RELEASE):
            kind = OutcomeKind.CANCEL  # a cancel requested while it ran wins over a rerun
        if done.error is not None:
            node.error, node.error_type = done.error, done.error_type
        if kind in (OutcomeKind.COMPLETE, OutcomeKind.FAIL):
            node.result = done.result
        if kind in _ENDS:
            self.end(node.id, _ENDS[kind])
        elif kind is OutcomeKind.RETRY:
            node.status = READY
        else:  # RELEASE: the attempt is refunded
            node.status = READY
            if node.attempts == 1 and node.after and node.ended_as is None:
                node.first_runs -= 1
            node.attempts -= 1
        return node

    def cancel_waiting(self, job_id: str) -> None:
        """``cancel`` of a DEFERRED or ready job: CANCELLED, its error fields untouched."""
        self.end(job_id, JobStatus.CANCELLED)

    def cancel_workflow(self, workflow: str) -> tuple[int, int]:
        """Apply ``cancel_workflow``; the bounds of the count it may answer (a running node
        whose cancel was requested before may or may not be counted again)."""
        nodes = [self.nodes[i] for i in self.workflows[workflow]]
        running = [n for n in nodes if n.ended_as is None and n.status == RUNNING]
        doomed = [n for n in nodes if n.ended_as is None and n.status != RUNNING]
        low = len(doomed) + sum(not n.cancel_requested for n in running)
        for node in running:
            node.cancel_requested = True
        # Each waiting node ends CANCELLED by itself, or, if the broker ends its parents first,
        # through a cancelled parent (under FAIL): either is the contract's.
        plain = {n.id: (JobStatus.CANCELLED, n.error_type, n.error) for n in doomed}
        for node in doomed:
            if node.ended_as is None:
                self.end(node.id, JobStatus.CANCELLED)
        for node in doomed:
            node.open, node.plain = True, plain[node.id]
        return low, len(doomed) + len(running)

    def choices(self, node: Node) -> list[Ending]:
        """What an ``open`` node may have ended as, given its parents as they stand."""
        found = [node.plain] if node.plain else []
        if node.if_failed is IfFailed.FAIL:
            for parent_id in node.after:
                parent = self.nodes[parent_id]
                if parent.ended_as not in (None, JobStatus.COMPLETED):
                    found.append(self.dependency_ending(parent))
        return found

    def fix(self, node: Node, seen: Ending) -> None:
        """The broker ended ``node`` as ``seen``, one of its choices: the model follows."""
        choices = self.choices(node)
        assert seen in choices, (node.id, seen, choices)
        node.open, node.plain = False, None
        node.status, node.error_type, node.error = seen
        node.ended_as = seen[0]
        node.wf_result = node.expected_result()

    def ready_ids(self) -> list[str]:
        return [n.id for n in self if n.status in (READY, RUNNING, DEFERRED)]
