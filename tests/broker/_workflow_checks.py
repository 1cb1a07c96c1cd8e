"""What ``test_workflow_model.py`` checks after each step and at the end: the broker against the
model (``_workflow_model``), node by node and workflow by workflow.

``Checks`` is a mixin of the state machine: it uses its ``broker``, its ``model`` and its
``call`` (an awaitable run on the test's event loop).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from hypothesis import event

from taskit.broker.base import Broker
from taskit.job import JobStatus
from tests.broker._workflow_model import (
    DEFERRED,
    QUEUES,
    READY,
    READY_STATUSES,
    RUNNING,
    Model,
    Node,
)

T = TypeVar("T")


class Checks:
    broker: Broker
    model: Model

    def call(self, awaitable: Awaitable[T]) -> T:
        raise NotImplementedError  # the state machine's

    def assert_status(self, node: Node, seen: JobStatus) -> None:
        """The broker's status of ``node``'s job is the one the model says."""
        if node.open:
            assert seen in (JobStatus.FAILED, JobStatus.CANCELLED), (node.id, seen)
        elif node.status == READY:
            assert seen in READY_STATUSES, (node.id, seen)
        elif node.status == DEFERRED:
            assert seen is JobStatus.DEFERRED, (node.id, seen)
        elif node.status == RUNNING:
            assert seen is JobStatus.RUNNING, (node.id, seen)
        else:
            assert seen is node.status, (node.id, seen, node.status)

    def resolve_open(self) -> None:
        """Read how the broker ended each ``open`` node, parents first, and fix it into the
        model once checked (``Model.fix``)."""
        for node in self.model:
            if node.open:
                job = self.call(self.broker.get(node.id))
                assert job is not None, node.id
                event(f"the broker's pick: {job.status} {job.error_type}")
                self.model.fix(node, (job.status, job.error_type, job.error))

    def agree(self) -> None:
        """Every node's job and workflow node as the model says; each workflow's nodes in
        enqueue order, their results, ``workflow_results``; the deferred and running counts."""
        self.resolve_open()
        for node in self.model:
            job = self.call(self.broker.get(node.id))
            assert job is not None, node.id
            self.assert_status(node, job.status)
            ended = node.ended_as is not None and node.status is node.ended_as
            if ended and node.error_type in ("DependencyFailed", "DependencyCancelled"):
                # Ended without running, by a parent: the exact reason.
                assert (job.error_type, job.error) == (node.error_type, node.error), node.id
        for workflow, ids in self.model.workflows.items():
            state = self.call(self.broker.workflow(workflow))
            assert state is not None, workflow
            assert [n.id for n in state.nodes] == ids, workflow  # in enqueue order
            for seen in state.nodes:
                node = self.model.nodes[seen.id]
                assert seen.after == node.after, seen.id
                assert seen.queue == node.job.queue, seen.id
                if node.ended_as is None:
                    assert seen.result is None, seen.id
                    job = self.call(self.broker.get(seen.id))
                    assert job is not None, seen.id
                    assert seen.status is job.status, (seen.id, seen.status, job.status)
                else:
                    assert seen.status is node.ended_as, (seen.id, seen.status, node.ended_as)
                    assert seen.result == node.wf_result, (seen.id, seen.result, node.wf_result)
            results = self.call(self.broker.workflow_results(workflow, [*ids, "no-such-node"]))
            assert results == [self.model.nodes[i].wf_result for i in ids] + [None], workflow
        stats = self.call(self.broker.stats(list(QUEUES)))
        for queue in QUEUES:
            deferred = [n for n in self.model if n.job.queue == queue and n.status == DEFERRED]
            running = [n for n in self.model if n.job.queue == queue and n.status == RUNNING]
            assert stats[queue].deferred == len(deferred), (queue, stats[queue])
            assert stats[queue].running == len(running), (queue, stats[queue])

    def check_fed(self, node: Node) -> None:
        """A leased node's parents all ended, and ``workflow_results`` gives their results in
        ``after.jobs`` order."""
        if not node.after:
            return
        workflow = node.job.workflow
        assert workflow is not None
        state = self.call(self.broker.workflow(workflow))
        assert state is not None
        for parent in node.after:
            seen = state.node(parent)
            assert seen is not None, (node.id, parent)
            assert seen.ended, (node.id, parent, seen)
        results = self.call(self.broker.workflow_results(workflow, list(node.after)))
        assert results == [self.model.nodes[p].wf_result for p in node.after], node.id

    def check_never_ran(self) -> None:
        """At the end: a node that never ran ended FAILED by a parent, or CANCELLED (by a
        cancel, or by a parent), with its reason."""
        for node in self.model:
            event(f"ended: {node.ended_as} {node.error_type if node.attempts == 0 else 'ran'}")
            if node.leases == 0:  # never ran: failed by a parent, or cancelled, with its reason
                job = self.call(self.broker.get(node.id))
                assert job is not None, node.id
                if node.ended_as is JobStatus.FAILED:
                    assert job.error_type == "DependencyFailed", (node.id, job.error_type)
                else:
                    assert node.ended_as is JobStatus.CANCELLED, (node.id, node.ended_as)
                    assert job.error_type in (None, "DependencyCancelled"), (node.id, job.error)
