"""Requests of workflows: read one (its record, some of its results), cancel one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.requests.request import Request
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg
from taskit.broker.redis.workflows import build_state, end_result
from taskit.job import JobResult
from taskit.workflow import WorkflowState

__all__ = ["WorkflowCancel", "WorkflowGet", "WorkflowResults"]


@dataclass(frozen=True, slots=True)
class WorkflowGet(Request[WorkflowState | None]):
    script: ClassVar[ScriptName] = "workflow-get"
    workflow_id: str

    def keys(self, k: Keys) -> list[str]:
        return [k.workflow(self.workflow_id), k.jobs]

    def args(self) -> list[Arg]:
        return []

    def answer(self, reply: Any) -> WorkflowState | None:
        """The workflow, or None for one unknown or expired."""
        if reply is None:
            return None
        fields, states = reply
        return build_state(self.workflow_id, fields, states)


@dataclass(frozen=True, slots=True)
class WorkflowResults(Request[list[JobResult | None]]):
    script: ClassVar[ScriptName] = "workflow-results"
    workflow_id: str
    job_ids: Sequence[str]

    def keys(self, k: Keys) -> list[str]:
        return [k.workflow(self.workflow_id)]

    def args(self) -> list[Arg]:
        return list(self.job_ids)

    def answer(self, reply: Any) -> list[JobResult | None]:
        """Each node's result in order; None for one not ended or not in the workflow."""
        return [
            None if raw is None else end_result(raw, job_id)[1]
            for raw, job_id in zip(reply, self.job_ids, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class WorkflowCancel(Request[int]):
    script: ClassVar[ScriptName] = "workflow-cancel"
    workflow_id: str
    ttl_ms: int

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.err, k.seq, k.progress, *k.limit_keys(), k.wf_of, k.wf_deferred,
                k.workflow(self.workflow_id)]  # fmt: skip

    def args(self) -> list[Arg]:
        return [self.ttl_ms]

    def answer(self, reply: Any) -> int:
        """How many nodes were cancelled or asked to stop."""
        return int(reply)
