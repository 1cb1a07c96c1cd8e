"""``Workflow``: the handle of an enqueued workflow (``taskit.canvas``; ``App.workflow(id)``).

It holds the workflow's id and, when it was built here, which nodes give its result; everything
else is read from the broker (``Broker.workflow``), so a handle made from an id in another
process sees the same state. Waiting polls the record, quickly at first (as ``_results`` waits
for a job), until every node has ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import anyio

from taskit._results import FIRST_POLL, check_wait
from taskit.errors import (
    ResultTimeoutError,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFoundError,
)
from taskit.job import JobResult, JobStatus
from taskit.producer import Producer
from taskit.workflow import WorkflowNode, WorkflowState

__all__ = ["Workflow"]

R_co = TypeVar("R_co", covariant=True)

#: What a node ended by its parent's end carries: not the cause of a failure, only its echo.
_ECHOES = frozenset({"DependencyFailed", "DependencyCancelled"})


class Workflow(Generic[R_co]):
    """An enqueued workflow: ``id``, its ``state``, its ``result``, ``cancel``.

    ``results``: the ids of the nodes whose values are its result, in order (``None``: the
    nodes no other waits for, its sinks); ``many``: the result is the list of their values (a
    group), else the one value of its one result node (a call, a chain, a chord).
    """

    __slots__ = ("_many", "_producer", "_results", "id")

    def __init__(
        self,
        workflow_id: str,
        producer: Producer,
        *,
        results: Sequence[str] | None = None,
        many: bool = False,
    ) -> None:
        self.id = workflow_id
        self._producer = producer
        self._results = None if results is None else tuple(results)
        self._many = many

    def __repr__(self) -> str:
        return f"<Workflow {self.id!r}>"

    async def state(self) -> WorkflowState:
        """Its record now: each node, where it stands, its result once ended.
        ``WorkflowNotFoundError`` for an unknown or expired workflow."""
        state = await self._producer.broker.workflow(self.id)
        if state is None:
            raise WorkflowNotFoundError(self.id)
        return state

    async def result(self, timeout: float | None = None, *, poll_interval: float = 0.05) -> R_co:
        """Wait until every node has ended, then its result: the value of its result node (a
        call, chain or chord), or the list of them in order (a group; from an id alone: of its
        sinks, one value when it has one).

        Raises ``WorkflowFailed`` when a result node did not complete, naming the node that
        caused it (``WorkflowCancelled``, a subclass, when that was a cancel);
        ``ResultTimeoutError`` (a ``TimeoutError``) after ``timeout`` seconds;
        ``WorkflowNotFoundError`` for an unknown or expired workflow; ``ValueError`` for a bad
        ``timeout`` or ``poll_interval``."""
        check_wait(timeout, poll_interval)
        delay = min(FIRST_POLL, poll_interval)
        with anyio.move_on_after(timeout):
            while True:
                state = await self.state()
                if state.finished:
                    return self._value(state)  # type: ignore[no-any-return]
                await anyio.sleep(delay)
                delay = min(delay * 2, poll_interval)
        raise ResultTimeoutError(f"workflow {self.id!r} did not finish within {timeout} s")

    async def cancel(self) -> int:
        """Cancel every node that has not ended: waiting ones end CANCELLED at once, running
        ones are asked to stop. How many it cancelled or asked; 0 for an ended or unknown
        workflow. Event subscribers hear ``cancelled`` for each node it ended, as after
        ``App.cancel`` (a running one is reported by its worker when it stops)."""
        broker, events = self._producer.broker, self._producer.events
        if not events:
            return await broker.cancel_workflow(self.id)
        before = await broker.workflow(self.id)
        count = await broker.cancel_workflow(self.id)
        if before is not None and count:
            for node in before.nodes:
                if not node.ended:
                    await events.after_cancel(await broker.get(node.id))
        return count

    def state_sync(self) -> WorkflowState:
        """``state`` for code without an event loop."""
        return self._producer.run_sync(self.state)

    def result_sync(self, timeout: float | None = None, *, poll_interval: float = 0.05) -> R_co:
        """``result`` for code without an event loop."""
        return self._producer.run_sync(lambda: self.result(timeout, poll_interval=poll_interval))

    def cancel_sync(self) -> int:
        """``cancel`` for code without an event loop."""
        return self._producer.run_sync(self.cancel)

    def _value(self, state: WorkflowState) -> Any:
        ids = self._results
        nodes = [state.node(i) for i in ids] if ids is not None else list(state.sinks)
        many = self._many if ids is not None else len(nodes) > 1
        results: list[JobResult] = []
        for node in nodes:
            if node is None or node.result is None or not node.result.success:
                raise _failure(state)
            results.append(node.result)
        values = [r.value for r in results]
        return values if many else values[0]


def _failure(state: WorkflowState) -> WorkflowFailed:
    """The error naming the node that caused the workflow's failure: the first node that failed
    of itself, else the first cancelled of itself, else the first that did not complete."""
    ended = [n for n in state.nodes if n.ended and n.status is not JobStatus.COMPLETED]
    causes = [n for n in ended if _error_type(n) not in _ECHOES] or ended
    failed = [n for n in causes if n.status in (JobStatus.FAILED, JobStatus.DEAD_LETTER)]
    if not causes:  # every node completed, yet a result node has none: say what is missing
        return WorkflowFailed(state.id, "?", "?", "missing", "a result node is not in it", None)
    node = (failed or causes)[0]
    kind = WorkflowFailed if failed else WorkflowCancelled
    result = node.result
    return kind(
        state.id, node.id, node.task, node.status.value,
        None if result is None else result.error, _error_type(node),
    )  # fmt: skip


def _error_type(node: WorkflowNode) -> str | None:
    return None if node.result is None else node.result.error_type
