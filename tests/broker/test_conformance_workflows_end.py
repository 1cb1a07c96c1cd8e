"""Broker conformance: how workflow nodes end, and what that does to the jobs waiting for them.

Every way a job ends (a settle of any final kind, ``cancel``, ``cancel_workflow``, ``purge``)
records its result in its workflow once, and in the same step releases or ends its dependents,
down to theirs (a cascade), with the exact texts of the lead's spec. A node's result stays in
the workflow whatever its job's ``result_ttl``; the workflow record expires the broker's result
TTL after its last node ended.
"""

from __future__ import annotations

import pytest

from taskit.dependencies import Feed, IfFailed
from taskit.job import JobResult, JobStatus, LeaseState, OutcomeKind
from taskit.workflow import WorkflowStatus
from tests.broker._helpers import LONG, new_queue
from tests.broker._workflows import (
    CANCELLED_TEXT,
    ended_as_its_job,
    finish,
    flow,
    node,
    run,
    short_lived,
    status,
    statuses,
    take,
    the_node,
    waited,
)
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

MADE_UP_CANCEL = JobResult(success=False, error=CANCELLED_TEXT, error_type="Cancelled")


async def test_a_failure_fails_its_dependents_down_the_chain_but_not_continue_ones(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a = node(q, "a", "wf")
    b = node(q, "b", "wf", a.id, feed=Feed.ONE)
    c = node(q, "c", "wf", b.id, feed=Feed.ONE)
    d = node(q, "d", "wf", a.id, if_failed=IfFailed.CONTINUE)
    await broker.enqueue([a, b, c, d])

    await run(broker, q, a.id, kind=OutcomeKind.FAIL, error="boom", error_type="Boom")

    state = await flow(broker, "wf")
    assert statuses(state) == {
        a.id: JobStatus.FAILED,
        b.id: JobStatus.FAILED,
        c.id: JobStatus.FAILED,
        d.id: JobStatus.PENDING,
    }
    await ended_as_its_job(broker, state, a.id)
    job_b = await ended_as_its_job(broker, state, b.id)
    first = waited(a.id, JobStatus.FAILED, "boom")
    assert (job_b.error_type, job_b.error, job_b.traceback) == ("DependencyFailed", first, None)
    assert job_b.failed_at is not None
    assert job_b.completed_at is not None
    assert job_b.started_at is None
    assert job_b.attempts == 0
    assert the_node(state, b.id).result == JobResult(
        success=False, error=first, error_type="DependencyFailed"
    )
    job_c = await ended_as_its_job(broker, state, c.id)
    assert (job_c.error_type, job_c.error) == (
        "DependencyFailed",
        first,  # a cascade names the failure that started it
    )
    stats = (await broker.stats([q]))[q]
    assert (stats.failed, stats.queued, stats.deferred) == (3, 1, 0)
    await run(broker, q, d.id)
    assert (await flow(broker, "wf")).status is WorkflowStatus.FAILED


async def test_a_continue_dependent_runs_after_every_parent_ended_however(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    members = [node(q, f"m{i}", "wf") for i in range(3)]
    callback = node(
        q, "cb", "wf", *(m.id for m in members), feed=Feed.ALL, if_failed=IfFailed.CONTINUE
    )
    await broker.enqueue([*members, callback])
    held = await take(broker, q)
    await finish(broker, held[members[0].id], OutcomeKind.FAIL, error="no")
    await finish(broker, held[members[1].id], OutcomeKind.DEAD_LETTER, error="gone")
    assert await status(broker, callback.id) is JobStatus.DEFERRED

    await finish(broker, held[members[2].id])

    assert list(await take(broker, q)) == [callback.id]
    results = await broker.workflow_results("wf", [m.id for m in members])
    assert [(r.success, r.error) for r in results if r is not None] == [
        (False, "no"),
        (False, "gone"),
        (True, None),
    ]


async def test_a_dead_letter_fails_its_dependents_once_even_if_requeued_and_completed(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    await broker.enqueue([a, b])
    await run(broker, q, a.id, kind=OutcomeKind.DEAD_LETTER, error="gone")
    job_b = await broker.get(b.id)
    assert job_b is not None
    assert job_b.status is JobStatus.FAILED
    assert job_b.error == waited(a.id, JobStatus.DEAD_LETTER, "gone")
    dead_result = the_node(await flow(broker, "wf"), a.id).result
    assert dead_result is not None
    assert (dead_result.success, dead_result.error) == (False, "gone")

    assert await broker.requeue_dead(q) == 1
    await run(broker, q, a.id, result=JobResult(success=True, value="late"))

    state = await flow(broker, "wf")
    assert await status(broker, a.id) is JobStatus.COMPLETED
    assert statuses(state) == {a.id: JobStatus.DEAD_LETTER, b.id: JobStatus.FAILED}
    assert the_node(state, a.id).result == dead_result
    assert await broker.workflow_results("wf", [a.id]) == [dead_result]
    assert await take(broker, q) == {}


async def test_cancelling_a_waiting_parent_cancels_its_dependents(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    c = node(q, "c", "wf", b.id)
    keep = node(q, "keep", "wf", a.id, if_failed=IfFailed.CONTINUE)
    await broker.enqueue([a, b, c, keep])

    assert await broker.cancel(a.id) is True

    state = await flow(broker, "wf")
    job_a = await ended_as_its_job(broker, state, a.id)
    assert job_a.error_type is None
    assert the_node(state, a.id).result == MADE_UP_CANCEL
    job_b = await ended_as_its_job(broker, state, b.id)
    first = waited(a.id, JobStatus.CANCELLED, CANCELLED_TEXT)
    assert (job_b.status, job_b.error_type, job_b.error) == (
        JobStatus.CANCELLED,
        "DependencyCancelled",
        first,
    )
    assert job_b.completed_at is not None  # ended as a cancel ends a job: no failed_at
    assert job_b.failed_at is None
    job_c = await ended_as_its_job(broker, state, c.id)
    assert (job_c.error_type, job_c.error) == (
        "DependencyCancelled",
        waited(b.id, JobStatus.CANCELLED, CANCELLED_TEXT),
    )
    assert list(await take(broker, q)) == [keep.id]  # CONTINUE: released


async def test_cancelling_a_deferred_job_ends_it_and_its_dependents_only(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    c = node(q, "c", "wf", b.id)
    await broker.enqueue([a, b, c])

    assert await broker.cancel(b.id) is True
    assert await broker.cancel(b.id) is False  # ended already

    state = await flow(broker, "wf")
    job_b = await ended_as_its_job(broker, state, b.id)
    assert (job_b.status, job_b.error_type) == (JobStatus.CANCELLED, None)
    job_c = await ended_as_its_job(broker, state, c.id)
    assert job_c.error_type == "DependencyCancelled"
    assert (await broker.stats([q]))[q].deferred == 0
    await run(broker, q, a.id)  # nothing left to release
    assert await take(broker, q) == {}
    assert (await flow(broker, "wf")).status is WorkflowStatus.CANCELLED


async def test_a_running_parent_cancelled_ends_its_dependents_when_its_worker_settles(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    await broker.enqueue([a, b])
    held = (await take(broker, q))[a.id]

    assert await broker.cancel(a.id) is True

    assert await status(broker, b.id) is JobStatus.DEFERRED
    assert await broker.extend([held], lease=LONG) == [LeaseState.CANCELLED]
    await finish(broker, held, OutcomeKind.CANCEL)
    job_b = await broker.get(b.id)
    assert job_b is not None
    assert job_b.status is JobStatus.CANCELLED
    assert job_b.error_type == "DependencyCancelled"


async def test_a_cancelled_parent_whose_lease_expired_ends_its_dependents_at_its_reclaim(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    keep = node(q, "keep", "wf", a.id, if_failed=IfFailed.CONTINUE)
    await broker.enqueue([a, b, keep])
    await broker.reserve([q], count=1, lease=0.05, timeout=0)
    assert await broker.cancel(a.id) is True
    await harness.advance(0.1)

    assert await broker.reclaim([q], lease=LONG) == []  # it ends CANCELLED instead

    state = await flow(broker, "wf")
    assert statuses(state)[a.id] is JobStatus.CANCELLED
    job_b = await ended_as_its_job(broker, state, b.id)
    assert (job_b.status, job_b.error_type) == (JobStatus.CANCELLED, "DependencyCancelled")
    assert list(await take(broker, q)) == [keep.id]


async def test_cancel_workflow_ends_every_waiting_node_as_cancel_does(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    done, runs = node(q, "done", "wf"), node(q, "runs", "wf")
    retries = node(q, "retries", "wf")
    await broker.enqueue([done, runs, retries])
    held = await take(broker, q)
    await finish(broker, held[done.id])
    await finish(broker, held[retries.id], OutcomeKind.RETRY, delay=30.0)
    assert await status(broker, retries.id) is JobStatus.RETRYING
    waits = node(q, "waits", "wf", runs.id)
    below = node(q, "below", "wf", waits.id)
    pending, later = node(q, "pending", "wf"), node(q, "later", "wf")
    await broker.enqueue([waits, below, pending, later], delays=[0.0, 0.0, 0.0, 30.0])

    assert await broker.cancel_workflow("wf") == 6  # five cancelled, one asked to stop

    state = await flow(broker, "wf")
    for job_id in (retries.id, waits.id, below.id, pending.id, later.id):
        job = await ended_as_its_job(broker, state, job_id)
        assert (job.status, job.error_type) == (JobStatus.CANCELLED, None), job_id
        assert the_node(state, job_id).result == MADE_UP_CANCEL
    assert statuses(state)[done.id] is JobStatus.COMPLETED
    assert statuses(state)[runs.id] is JobStatus.RUNNING
    stats = (await broker.stats([q]))[q]
    assert (stats.queued, stats.scheduled, stats.deferred, stats.running) == (0, 0, 0, 1)
    assert await broker.extend([held[runs.id]], lease=LONG) == [LeaseState.CANCELLED]
    await finish(broker, held[runs.id], OutcomeKind.CANCEL)
    assert (await flow(broker, "wf")).status is WorkflowStatus.CANCELLED
    assert await broker.cancel_workflow("wf") == 0  # ended
    assert await broker.cancel_workflow("no-such-workflow") == 0


async def test_purge_ends_deleted_nodes_as_cancelled_and_leaves_deferred_ones(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a = node(q, "a", "wf")
    b = node(q, "b", "wf", a.id)
    keep = node(q, "keep", "wf", a.id, if_failed=IfFailed.CONTINUE)
    await broker.enqueue([a, b, keep])

    assert await broker.purge(q) == 1  # a; the deferred b and keep are not purged

    assert await broker.get(a.id) is None
    state = await flow(broker, "wf")
    assert the_node(state, a.id).status is JobStatus.CANCELLED
    assert the_node(state, a.id).result == MADE_UP_CANCEL
    job_b = await ended_as_its_job(broker, state, b.id)
    assert (job_b.status, job_b.error_type, job_b.error) == (
        JobStatus.CANCELLED,
        "DependencyCancelled",
        waited(a.id, JobStatus.CANCELLED, CANCELLED_TEXT),
    )
    assert list(await take(broker, q)) == [keep.id]


async def test_a_node_kept_no_time_keeps_its_result_in_the_workflow(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a = node(q, "a", "wf", result_ttl=0.0)
    b = node(q, "b", "wf", a.id, feed=Feed.ONE)
    await broker.enqueue([a, b])

    await run(broker, q, a.id, result=JobResult(success=True, value=5), result_ttl=0.0)

    assert await broker.get(a.id) is None
    state = await flow(broker, "wf")
    assert the_node(state, a.id).status is JobStatus.COMPLETED
    assert the_node(state, a.id).result == JobResult(success=True, value=5)
    assert await broker.workflow_results("wf", [a.id]) == [JobResult(success=True, value=5)]
    assert list(await take(broker, q)) == [b.id]


async def test_a_workflow_expires_its_result_ttl_after_its_last_node_ended(
    harness: BrokerHarness, request: pytest.FixtureRequest
) -> None:
    ttl = 0.6  # seconds; a real sleep on Redis: each check keeps 0.2 s or more of margin
    async with short_lived(harness, request, result_ttl=ttl) as (broker, advance):
        q = new_queue()
        a, b = node(q, "a", "wf", result_ttl=3600.0), node(q, "b", "wf")
        await broker.enqueue([a, b])
        await run(broker, q, a.id, result_ttl=3600.0)
        await advance(ttl + 0.2)
        assert await broker.workflow("wf") is not None  # b has not ended
        await run(broker, q, b.id, result_ttl=3600.0)
        await advance(0.2)
        c = node(q, "c", "wf", a.id)  # a node enqueued into it keeps it again
        await broker.enqueue([c])
        await advance(ttl - 0.1)  # past b's end + ttl
        assert [n.id for n in (await flow(broker, "wf")).nodes] == [a.id, b.id, c.id]
        await run(broker, q, c.id, result_ttl=3600.0)
        await advance(0.2)
        assert (await flow(broker, "wf")).status is WorkflowStatus.COMPLETED

        await advance(ttl)

        assert await broker.workflow("wf") is None
        assert await broker.workflow_results("wf", [a.id]) == [None]
        assert await status(broker, a.id) is JobStatus.COMPLETED  # its own record stays
