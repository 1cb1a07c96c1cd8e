"""Workflows in the memory broker: which jobs wait for which, and how each node ended.

``WorkflowBook`` is the graph alone, as the Redis broker keeps it in a workflow's keys: each
workflow's nodes in the order they joined, the parents each node still waits for, and each
ended node's final status and result. It knows nothing of records or queues: ``WorkflowsState``
(the memory state with workflows) tells it when a job joins (``join``) and when one ends
(``ended``), and does to the records what it answers (release a job, or end it for its
parent's failure). Call every method with the state's lock held.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec

from taskit.broker.memory.flow import FlowState
from taskit.broker.memory.state import Record
from taskit.broker.memory.wakeup import wake_all
from taskit.clock import Clock
from taskit.config import DEFAULT_RESULT_TTL
from taskit.dependencies import IfFailed, check_after
from taskit.job import Job, JobResult, JobStatus, result_of, utc_from_timestamp
from taskit.workflow import WorkflowNode, WorkflowState

__all__ = ["Failure", "WorkflowBook", "WorkflowsState", "node_result"]

_RESULT = msgspec.msgpack.Decoder(JobResult)
_ENCODER = msgspec.msgpack.Encoder()


def _copy(result: JobResult) -> JobResult:
    """``result`` through its stored form: what the book keeps never aliases a job's."""
    return _RESULT.decode(_ENCODER.encode(result))


def node_result(job: Job) -> JobResult:
    """What a node keeps of its job's end: ``result_of`` it, copied; for a job whose result
    no longer encodes (a damaged record, dead-lettered for it), the error that buried it."""
    try:
        return _copy(result_of(job))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError, msgspec.DecodeError):
        return JobResult(success=False, error=job.error, error_type=job.error_type)


class Failure(NamedTuple):
    """Why a waiting job ends without running: the parent that ended without success, how
    it ended, and its result."""

    parent: str
    status: JobStatus
    result: JobResult | None


@dataclass(slots=True)
class _Node:
    id: str
    task: str
    queue: str
    after: tuple[str, ...] = ()
    continues: bool = False  # ``IfFailed.CONTINUE``: any end of a parent counts as one
    waiting: set[str] = field(default_factory=set)  # parents not ended yet
    status: JobStatus | None = None  # its final status, once it ended
    result: JobResult | None = None


@dataclass(slots=True)
class _Flow:
    created_at: float
    nodes: dict[str, _Node] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)  # parent -> waiting ids
    open: int = 0  # nodes not ended
    expires: float = math.inf  # the broker's result TTL after its last node ended


class WorkflowBook:
    """Every workflow the broker keeps (see the module docstring)."""

    def __init__(self) -> None:
        self._flows: dict[str, _Flow] = {}
        self._member: dict[str, str] = {}  # job id -> the workflow it is a node of
        self._expiring: list[tuple[float, str]] = []  # a heap: (expiry, workflow id)

    def workflow_of(self, job_id: str) -> str | None:
        """The id of the workflow job ``job_id`` is a node of, or None."""
        return self._member.get(job_id)

    def join(self, workflow_id: str, job: Job, now: float) -> Failure | bool:
        """Job ``job`` becomes a node of ``workflow_id`` (its parents are nodes already:
        ``adopt`` them first). Answers what becomes of it now: ``True`` released (it waits
        for nothing), ``False`` deferred, or the ``Failure`` that ends it at once."""
        flow = self._flows.get(workflow_id)
        if flow is None:
            flow = self._flows[workflow_id] = _Flow(created_at=now)
        after = job.after
        node = _Node(job.id, job.task, job.queue)
        if after is not None:
            node.after, node.continues = after.jobs, after.if_failed is IfFailed.CONTINUE
        flow.nodes[job.id] = node
        self._member[job.id] = workflow_id
        flow.open += 1
        flow.expires = math.inf
        for parent in node.after:
            found = flow.nodes[parent]
            if found.status is None:
                node.waiting.add(parent)
            elif found.status is not JobStatus.COMPLETED and not node.continues:
                return Failure(parent, found.status, found.result)
        for parent in node.waiting:
            flow.children.setdefault(parent, []).append(job.id)
        return not node.waiting

    def adopt(self, workflow_id: str, job: Job, now: float) -> None:
        """Job ``job`` (stored, of no workflow) becomes a node of ``workflow_id``, as it stands:
        ended, with its result, if it is finished."""
        if job.status.finished:
            flow = self._flows.setdefault(workflow_id, _Flow(created_at=now))
            node = _Node(job.id, job.task, job.queue, status=job.status)
            node.result = node_result(job)
            flow.nodes[job.id] = node
            self._member[job.id] = workflow_id
            return
        self.join(workflow_id, msgspec.structs.replace(job, after=None), now)

    def ended(
        self, job_id: str, status: JobStatus, result: JobResult, now: float, ttl: float
    ) -> list[tuple[str, Failure | None]]:
        """Job ``job_id`` ended ``status`` with ``result`` (kept as it is: give a copy, see
        ``node_result``): record it (its first end only) and
        answer what becomes of each job waiting for it: ``(id, None)`` released, or
        ``(id, Failure)`` ended. ``ttl``: seconds the workflow is kept once every node ended."""
        flow = self._flows.get(self._member.get(job_id, ""))
        node = None if flow is None else flow.nodes.get(job_id)
        if flow is None or node is None or node.status is not None:
            return []
        node.status, node.result = status, result
        flow.open -= 1
        if flow.open == 0:
            flow.expires = now + ttl
            heapq.heappush(self._expiring, (flow.expires, self._member[job_id]))
        effects: list[tuple[str, Failure | None]] = []
        for child_id in flow.children.pop(job_id, ()):
            child = flow.nodes[child_id]
            if child.status is not None:
                continue
            if status is JobStatus.COMPLETED or child.continues:
                child.waiting.discard(job_id)
                if not child.waiting:
                    effects.append((child_id, None))
            else:
                effects.append((child_id, Failure(job_id, status, node.result)))
        return effects

    def expire(self, now: float) -> None:
        """Forget the workflows whose every node ended longer than their TTL ago."""
        while self._expiring and self._expiring[0][0] <= now:
            expires, workflow_id = heapq.heappop(self._expiring)
            flow = self._flows.get(workflow_id)
            if flow is None or flow.expires != expires or flow.open:
                continue  # it gained a node since, or went already: a stale entry
            del self._flows[workflow_id]
            for job_id in flow.nodes:
                if self._member.get(job_id) == workflow_id:
                    del self._member[job_id]

    def open_nodes(self, workflow_id: str) -> list[str]:
        """The ids of the workflow's nodes that have not ended, in order."""
        flow = self._flows.get(workflow_id)
        if flow is None:
            return []
        return [n.id for n in flow.nodes.values() if n.status is None]

    def state(
        self, workflow_id: str, status_now: Callable[[str], JobStatus]
    ) -> WorkflowState | None:
        """The workflow as ``Broker.workflow`` answers it; ``status_now`` gives the status of
        a node that has not ended."""
        flow = self._flows.get(workflow_id)
        if flow is None:
            return None
        nodes = tuple(
            WorkflowNode(
                id=n.id,
                task=n.task,
                queue=n.queue,
                status=status_now(n.id) if n.status is None else n.status,
                after=n.after,
                result=None if n.result is None else _copy(n.result),
            )
            for n in flow.nodes.values()
        )
        created = utc_from_timestamp(flow.created_at)
        return WorkflowState(id=workflow_id, created_at=created, nodes=nodes)

    def results(self, workflow_id: str, job_ids: Sequence[str]) -> list[JobResult | None]:
        """The ended nodes' results, in the order of ``job_ids`` (None: not ended, no node)."""
        flow = self._flows.get(workflow_id)
        found = [None if flow is None else flow.nodes.get(i) for i in job_ids]
        return [None if n is None or n.result is None else _copy(n.result) for n in found]


class WorkflowsState(FlowState):
    """The memory state with workflows: every end of a job goes through ``_ended``, which
    records it in its workflow and releases or ends the jobs waiting for it, down the graph."""

    def __init__(
        self, *, clock: Clock | None = None, result_ttl: float = DEFAULT_RESULT_TTL
    ) -> None:
        super().__init__(clock=clock, result_ttl=result_ttl)
        self._flows = WorkflowBook()
        self._ends: deque[tuple[str, JobStatus, JobResult]] = deque()  # ends not yet applied
        self._cascading = False  # an end is being applied: later ones queue behind it

    # -- enqueue (call with the lock held) ---------------------------------------------------
    def _check_workflows(self, jobs: Sequence[Job], now: float) -> None:
        """``TypeError``/``ValueError`` naming the job and the parent if a job's ``after``
        cannot be kept (see ``Broker.enqueue``); nothing is stored by then."""
        self._flows.expire(now)
        first: dict[str, int] = {}
        for i, job in enumerate(jobs):
            first.setdefault(job.id, i)
        for i, job in enumerate(jobs):
            check_after(job.id, job.workflow, job.after)
            for parent in () if job.after is None else job.after.jobs:
                owner = self._owner(job, parent, first.get(parent), i, jobs)
                if owner is not None and owner != job.workflow:
                    raise ValueError(
                        f"job {job.id!r} of workflow {job.workflow!r} waits for job "
                        f"{parent!r}, which is a node of another workflow, {owner!r}"
                    )

    def _owner(
        self, job: Job, parent: str, at: int | None, i: int, jobs: Sequence[Job]
    ) -> str | None:
        """The workflow of ``job``'s parent ``parent`` (None: none yet; it is adopted), or
        ``ValueError`` if it cannot be a parent: unknown, or later in ``jobs``."""
        record = self._records.get(parent)
        live = record is not None and not record.job.status.finished
        if at is not None and not live:  # this enqueue stores it
            if at > i:
                raise ValueError(
                    f"job {job.id!r} waits for job {parent!r}, which comes later in the same "
                    "enqueue: a job's parents must come before it"
                )
            return jobs[at].workflow
        owner = self._flows.workflow_of(parent)
        if owner is not None:
            return owner
        if record is None:
            raise ValueError(
                f"job {job.id!r} waits for job {parent!r}, which is unknown (never stored, "
                "or its record expired)"
            )
        return record.job.workflow

    def _place(self, record: Record, due: float, now: float) -> None:
        """Put a job just stored where it belongs: a node of its workflow (its parents of no
        workflow adopted first), ready or scheduled when it waits for nothing, DEFERRED when
        it waits, or ended at once when a parent already failed or was cancelled."""
        job = record.job
        verdict: Failure | bool = True
        if job.workflow is not None:
            for parent in () if job.after is None else job.after.jobs:
                if self._flows.workflow_of(parent) != job.workflow:  # of none (checked)
                    self._flows.adopt(job.workflow, self._records[parent].job, now)
            verdict = self._flows.join(job.workflow, job, now)
        if verdict is True:  # stored PENDING: ready now, or scheduled
            if due > now:
                self._schedule(record, due, JobStatus.SCHEDULED)
            else:
                self._push_ready(record)
            return
        self._set_status(record, JobStatus.DEFERRED)
        record.due = due
        if isinstance(verdict, Failure):
            self._fail(record, verdict, now)

    # -- ends (call with the lock held) ------------------------------------------------------
    def _ended(self, record: Record, now: float) -> None:
        if self._flows.workflow_of(record.job.id) is not None:
            self._ended_as(record.job.id, record.job.status, node_result(record.job), now)

    def _ended_as(self, job_id: str, status: JobStatus, result: JobResult, now: float) -> None:
        """Apply job ``job_id``'s end to its workflow: release or end the jobs waiting for it,
        and theirs in turn (a loop, not a recursion: a chain may be long)."""
        self._ends.append((job_id, status, result))
        if self._cascading:
            return  # the loop below, further up the stack, applies it
        self._cascading = True
        try:
            while self._ends:
                ended_id, ended_as, ended_with = self._ends.popleft()
                effects = self._flows.ended(ended_id, ended_as, ended_with, now, self._result_ttl)
                for child_id, failure in effects:
                    child = self._records.get(child_id)
                    if child is None or child.job.status is not JobStatus.DEFERRED:
                        continue  # cannot happen: a waiting node's job is DEFERRED
                    if failure is None:
                        self._release_job(child, now)
                    else:
                        self._fail(child, failure, now)
        finally:
            self._cascading = False
            self._ends.clear()

    def _release_job(self, record: Record, now: float) -> None:
        """A DEFERRED job waits for nothing more: at the back of its queue, or SCHEDULED
        until its due time (counted from its enqueue)."""
        record.seq = self._next_seq()
        if record.due > now:
            self._schedule(record, record.due, JobStatus.SCHEDULED)
        else:
            self._set_status(record, JobStatus.PENDING)
            self._push_ready(record)

    def _fail(self, record: Record, failure: Failure, now: float) -> None:
        """End a DEFERRED job without running it, for its parent's failure or cancel."""
        job = record.job
        cancelled = failure.status is JobStatus.CANCELLED
        error = f"waited for job {failure.parent}, which ended {failure.status.value}"
        parent = failure.result
        if parent is not None and parent.error_type == "DependencyFailed" and parent.error:
            error = parent.error  # a cascade: name the failure that started it (no growth)
        elif parent is not None and parent.error:
            error = f"{error}: {parent.error}"
        job.error, job.traceback = error, None
        job.error_type = "DependencyCancelled" if cancelled else "DependencyFailed"
        if not cancelled:
            job.failed_at = utc_from_timestamp(now)
        status = JobStatus.CANCELLED if cancelled else JobStatus.FAILED
        self._finish(record, status, now, job.result_ttl)

    def _purged(self, records: Sequence[Record], now: float) -> None:
        """Jobs deleted by a purge end CANCELLED for their workflows."""
        for record in records:
            if self._flows.workflow_of(record.job.id) is not None:
                gone = msgspec.structs.replace(record.job, status=JobStatus.CANCELLED)
                self._ended_as(gone.id, JobStatus.CANCELLED, node_result(gone), now)

    # -- the contract's workflow methods -------------------------------------------------------
    async def workflow(self, workflow_id: str) -> WorkflowState | None:
        with self._lock:
            self._flows.expire(self._clock.time())
            return self._flows.state(workflow_id, self._status_now)

    async def workflow_results(
        self, workflow_id: str, job_ids: Sequence[str]
    ) -> list[JobResult | None]:
        with self._lock:
            self._flows.expire(self._clock.time())
            return self._flows.results(workflow_id, job_ids)

    async def cancel_workflow(self, workflow_id: str) -> int:
        with self._lock:
            now = self._clock.time()
            self._expire(now)
            self._flows.expire(now)
            count = 0
            # Last first: each node's dependents come after it, so they are cancelled (as
            # ``cancel`` does) before their parent's cancel could end them for it.
            for job_id in reversed(self._flows.open_nodes(workflow_id)):
                record = self._records.get(job_id)
                if record is None or record.job.status.finished:
                    continue
                count += 1
                if record.job.status is JobStatus.RUNNING:
                    record.cancel_requested = True
                else:
                    self._unready(record)
                    self._unhold(record, gone=True)
                    self._finish(record, JobStatus.CANCELLED, now, record.job.result_ttl)
            waiters = self._take_waiters()
        wake_all(waiters)
        return count

    def _status_now(self, job_id: str) -> JobStatus:
        record = self._records.get(job_id)
        return JobStatus.PENDING if record is None else record.job.status
