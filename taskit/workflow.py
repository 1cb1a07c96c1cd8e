"""What a broker says of a workflow: its nodes, where each stands, and how they ended.

A workflow is the jobs that carry one workflow id (``Job.workflow``), linked by what each waits
for (``Job.after``). The broker keeps its record (``Broker.workflow``) from its first node's
enqueue until its result TTL after its last node ended, and keeps each ended node's result in it
(also when the node's own job record is gone: ``result_ttl=0``, expired), so a chord's callback
and a caller awaiting the workflow always find them.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from taskit.job import JobResult, JobStatus

__all__ = ["WorkflowNode", "WorkflowState", "WorkflowStatus"]


class WorkflowStatus(enum.StrEnum):
    """Where a workflow stands as a whole."""

    RUNNING = "running"  #: a node has not ended yet
    COMPLETED = "completed"  #: every node completed
    FAILED = "failed"  #: every node ended, and one failed or was dead-lettered
    CANCELLED = "cancelled"  #: every node ended, none failed, and one was cancelled


class WorkflowNode(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One node of a workflow: its job's id, task and queue, the nodes it waits for, where it
    stands, and, once it ended, its result (a failure's ``JobResult`` names its error)."""

    id: str
    task: str
    queue: str
    status: JobStatus
    after: tuple[str, ...] = ()
    result: JobResult | None = None

    @property
    def ended(self) -> bool:
        """True once the node reached a final state (its ``result`` is then set)."""
        return self.status.finished


class WorkflowState(msgspec.Struct, kw_only=True, frozen=True):
    """A workflow as its broker holds it: its nodes in the order they were enqueued."""

    id: str
    created_at: datetime
    nodes: tuple[WorkflowNode, ...]

    @property
    def finished(self) -> bool:
        """True once every node ended."""
        return all(node.ended for node in self.nodes)

    @property
    def status(self) -> WorkflowStatus:
        """The workflow's status, from its nodes' (see ``WorkflowStatus``)."""
        if not self.finished:
            return WorkflowStatus.RUNNING
        found = {node.status for node in self.nodes}
        if found & {JobStatus.FAILED, JobStatus.DEAD_LETTER}:
            return WorkflowStatus.FAILED
        if JobStatus.CANCELLED in found:
            return WorkflowStatus.CANCELLED
        return WorkflowStatus.COMPLETED

    @property
    def sinks(self) -> tuple[WorkflowNode, ...]:
        """The nodes no other node waits for, in order: their results are the workflow's."""
        waited = {parent for node in self.nodes for parent in node.after}
        return tuple(node for node in self.nodes if node.id not in waited)

    def node(self, job_id: str) -> WorkflowNode | None:
        """The node of that job id, or None."""
        return next((node for node in self.nodes if node.id == job_id), None)
