"""Broker conformance: workflows, how jobs wait and are released (``Broker`` docstring,
"Workflows", and the lead's spec for issue 15).

A job with ``after`` is DEFERRED, in no queue and counted only as ``deferred``, until every job
it waits for has ended; it is then released at the back of its queue (or SCHEDULED until its
due time), exactly once, in the step that ended its last parent. Parents are earlier jobs of
the batch or stored jobs of the same workflow or of none (adopted); anything else is a
``ValueError`` before anything is stored. How nodes end (failures, cancels, purges, dead
letters, expiry) is in ``test_conformance_workflows_end``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import msgspec
import pytest

from taskit.dependencies import Feed, IfFailed
from taskit.job import JobResult, JobStatus, OutcomeKind
from taskit.workflow import WorkflowStatus
from tests.broker._helpers import LONG, make_job, new_queue, outcome
from tests.broker._workflows import (
    ended_as_its_job,
    finish,
    flow,
    node,
    plain_node,
    run,
    status,
    statuses,
    take,
    the_node,
    waited,
)
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio


async def test_a_waiting_job_is_deferred_in_no_queue_and_counted_only_as_deferred(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")

    stored = await broker.enqueue([a, b])

    assert [j.status for j in stored] == [JobStatus.PENDING, JobStatus.DEFERRED]
    assert await status(broker, b.id) is JobStatus.DEFERRED
    stats = (await broker.stats([q]))[q]
    assert (stats.queued, stats.scheduled, stats.running, stats.deferred) == (1, 0, 0, 1)
    assert list(await take(broker, q)) == [a.id]
    state = await flow(broker, "wf")
    assert state.id == "wf"
    assert isinstance(state.created_at, datetime)
    assert [(n.id, n.task, n.queue, n.after) for n in state.nodes] == [
        (a.id, "tests.noop", q, ()),
        (b.id, "tests.noop", q, (a.id,)),
    ]
    assert statuses(state) == {a.id: JobStatus.RUNNING, b.id: JobStatus.DEFERRED}
    assert [n.result for n in state.nodes] == [None, None]
    assert state.status is WorkflowStatus.RUNNING


async def test_a_chain_releases_each_step_at_the_back_of_its_queue(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a", feed=Feed.ONE)
    c = node(q, "c", "wf", b.id, feed=Feed.ONE)
    await broker.enqueue([a, b, c])
    [held_a] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
    other = make_job(q, job_id=f"{q}-other")
    await broker.enqueue([other])  # ready before b is released

    await finish(broker, held_a, result=JobResult(success=True, value=1))

    assert await status(broker, b.id) is JobStatus.PENDING
    assert await status(broker, c.id) is JobStatus.DEFERRED
    order = await broker.reserve([q], count=10, lease=LONG, timeout=0)
    assert [lease.job.id for lease in order] == [other.id, b.id]  # b at the back
    assert order[1].job.after is not None
    assert order[1].job.after.jobs == (a.id,)
    await finish(broker, order[1], result=JobResult(success=True, value=2))
    assert await broker.workflow_results("wf", [a.id, b.id, c.id]) == [
        JobResult(success=True, value=1),
        JobResult(success=True, value=2),
        None,
    ]
    await run(broker, q, c.id)
    state = await flow(broker, "wf")
    assert state.status is WorkflowStatus.COMPLETED
    for job_id in (a.id, b.id, c.id):
        await ended_as_its_job(broker, state, job_id)


async def test_a_release_wakes_a_reserve_waiting_on_the_dependents_queue(
    harness: BrokerHarness,
) -> None:
    broker, q, q2 = harness.broker, new_queue(), new_queue()
    a, b = node(q, "a", "wf"), node(q2, "b", "wf", f"{q}-a")
    await broker.enqueue([a, b])
    [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
    assert [(await broker.stats([x]))[x].deferred for x in (q, q2)] == [0, 1]  # b's queue
    got: list[str] = []

    async def wait() -> None:
        leases = await broker.reserve([q2], count=1, lease=LONG, timeout=5.0)
        got.extend(lease.job.id for lease in leases)

    started = anyio.current_time()
    with anyio.fail_after(4):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()  # the reserve waits: the release must wake it
            await finish(broker, held)
    assert got == [b.id]
    assert anyio.current_time() - started < 3.0


async def test_a_dependent_whose_due_time_is_ahead_is_released_as_scheduled(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    later = datetime.now(UTC) + timedelta(seconds=30)
    a = node(q, "a", "wf")
    b = node(q, "b", "wf", a.id, scheduled_at=later)  # due at a set time
    c = node(q, "c", "wf", a.id)  # due after a delay that will have passed
    d = node(q, "d", "wf", a.id)  # due after a delay still ahead
    await broker.enqueue([a, b, c, d], delays=[0.0, 0.0, 0.1, 30.0])
    await harness.advance(0.2)

    await run(broker, q, a.id)

    stats = (await broker.stats([q]))[q]
    assert (stats.queued, stats.scheduled, stats.deferred) == (1, 2, 0)
    assert list(await take(broker, q)) == [c.id]
    job_b, job_d = await broker.get(b.id), await broker.get(d.id)
    assert job_b is not None
    assert job_b.status is JobStatus.SCHEDULED
    assert job_b.scheduled_at is not None
    assert abs((job_b.scheduled_at - later).total_seconds()) < 0.01
    assert job_d is not None
    assert job_d.status is JobStatus.SCHEDULED
    job_a = await broker.get(a.id)  # started 0.2 s after the enqueue, on the broker's clock
    assert job_a is not None
    assert job_a.started_at is not None
    assert job_d.scheduled_at is not None  # counted from its enqueue, not from its release
    assert abs((job_d.scheduled_at - job_a.started_at).total_seconds() - 29.8) < 1.0


async def test_a_chord_callback_is_released_once_when_its_last_members_settle_together(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    members = [node(q, f"m{i}", "wf") for i in range(3)]
    callback = node(q, "cb", "wf", *(m.id for m in members), feed=Feed.ALL)
    await broker.enqueue([*members, callback])
    held = await take(broker, q)
    assert sorted(held) == sorted(m.id for m in members)
    await finish(broker, held[members[0].id])
    assert await status(broker, callback.id) is JobStatus.DEFERRED

    last = [
        outcome(held[m.id], OutcomeKind.COMPLETE, result=JobResult(success=True, value=m.id))
        for m in members[1:]
    ]
    assert await broker.settle(last) == [True, True]

    assert list(await take(broker, q)) == [callback.id]
    assert await take(broker, q) == {}
    assert await broker.workflow_results("wf", [m.id for m in members]) == [
        JobResult(success=True, value=m.id) for m in members
    ]


async def test_a_chord_callback_is_released_once_when_its_last_members_settle_concurrently(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    members = [node(q, f"m{i}", "wf") for i in range(2)]
    callback = node(q, "cb", "wf", *(m.id for m in members), feed=Feed.ALL)
    await broker.enqueue([*members, callback])
    held = await take(broker, q)
    answers: list[list[bool]] = []

    async def settle_one(job_id: str) -> None:
        answers.append(await broker.settle([outcome(held[job_id], OutcomeKind.COMPLETE)]))

    async with anyio.create_task_group() as tg:
        for m in members:
            tg.start_soon(settle_one, m.id)

    assert answers == [[True], [True]]
    assert list(await take(broker, q)) == [callback.id]
    assert await take(broker, q) == {}
    stats = (await broker.stats([q]))[q]
    assert (stats.queued, stats.running, stats.deferred, stats.completed) == (0, 1, 0, 2)


async def test_stale_duplicate_and_retried_settles_release_nothing_twice(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    await broker.enqueue([a, b])
    [first] = await broker.reserve([q], count=1, lease=0.05, timeout=0)
    await harness.advance(0.1)
    [second] = await broker.reclaim([q], lease=LONG)
    assert await broker.settle([outcome(first, OutcomeKind.COMPLETE)]) == [False]  # stale
    assert await status(broker, b.id) is JobStatus.DEFERRED
    retry = outcome(second, OutcomeKind.RETRY)  # a retry is not an end
    assert await broker.settle([retry]) == [True]
    assert await status(broker, b.id) is JobStatus.DEFERRED
    [third] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
    done = outcome(third, OutcomeKind.COMPLETE, result=JobResult(success=True, value="once"))

    assert await broker.settle([done]) == [True]
    assert await broker.settle([done]) == [True]  # its reply was lost: sent again
    assert await broker.settle([outcome(first, OutcomeKind.COMPLETE)]) == [False]
    assert await broker.settle([outcome(third, OutcomeKind.FAIL, error="late")]) == [False]

    assert list(await take(broker, q)) == [b.id]
    assert await take(broker, q) == {}
    state = await flow(broker, "wf")
    assert the_node(state, a.id).result == JobResult(success=True, value="once")
    assert statuses(state) == {a.id: JobStatus.COMPLETED, b.id: JobStatus.RUNNING}


async def test_a_plain_live_parent_is_adopted_before_the_job_that_waits_for_it(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    plain = node(q, "plain", None)
    await broker.enqueue([plain])
    first = node(q, "first", "wf")
    waiting = node(q, "waiting", "wf", plain.id)

    await broker.enqueue([first, waiting])

    state = await flow(broker, "wf")
    assert [n.id for n in state.nodes] == [first.id, plain.id, waiting.id]
    assert statuses(state) == {
        first.id: JobStatus.PENDING,
        plain.id: JobStatus.PENDING,
        waiting.id: JobStatus.DEFERRED,
    }
    await run(broker, q, plain.id, result=JobResult(success=True, value=7))
    assert await status(broker, waiting.id) is JobStatus.PENDING
    assert await broker.workflow_results("wf", [plain.id]) == [JobResult(success=True, value=7)]


async def test_a_finished_plain_parent_is_adopted_with_its_result(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    good, bad = plain_node(broker, q, "good"), plain_node(broker, q, "bad")
    await broker.enqueue([good, bad])
    await run(broker, q, good.id, result=JobResult(success=True, value=7))
    await run(broker, q, bad.id, kind=OutcomeKind.FAIL, error="boom", error_type="Boom")
    released = node(q, "released", "wf", good.id)
    failed = node(q, "failed", "wf", good.id, bad.id)
    below = node(q, "below", "wf", failed.id)  # its dependent in the same batch follows

    stored = await broker.enqueue([released, failed, below])

    assert [j.status for j in stored] == [JobStatus.PENDING, JobStatus.FAILED, JobStatus.FAILED]
    state = await flow(broker, "wf")
    assert [n.id for n in state.nodes] == [good.id, released.id, bad.id, failed.id, below.id]
    assert the_node(state, good.id).result == JobResult(success=True, value=7)
    assert the_node(state, bad.id).status is JobStatus.FAILED
    await ended_as_its_job(broker, state, bad.id)
    job = await ended_as_its_job(broker, state, failed.id)
    first = waited(bad.id, JobStatus.FAILED, "boom")
    assert (job.error_type, job.error, job.traceback) == ("DependencyFailed", first, None)
    job = await ended_as_its_job(broker, state, below.id)
    assert job.error == first  # a cascade names the failure that started it
    assert list(await take(broker, q)) == [released.id]


async def test_a_cancelled_plain_parent_ends_its_new_dependent_at_once(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    gone = node(q, "gone", None)
    await broker.enqueue([gone])
    assert await broker.cancel(gone.id)
    waits = node(q, "waits", "wf", gone.id)
    runs = node(q, "runs", "wf", gone.id, if_failed=IfFailed.CONTINUE)

    stored = await broker.enqueue([waits, runs])

    assert [j.status for j in stored] == [JobStatus.CANCELLED, JobStatus.PENDING]
    state = await flow(broker, "wf")
    job = await ended_as_its_job(broker, state, waits.id)
    assert (job.error_type, job.error) == (
        "DependencyCancelled",
        waited(gone.id, JobStatus.CANCELLED, "job was cancelled"),
    )
    assert the_node(state, gone.id).status is JobStatus.CANCELLED


async def test_a_job_kept_in_place_of_the_one_given_changes_no_workflow(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    alone = plain_node(broker, q, "same")
    await broker.enqueue([alone])

    [kept] = await broker.enqueue([msgspec.structs.replace(alone, workflow="wf")])

    assert kept.duplicate
    assert kept.workflow is None
    assert await broker.workflow("wf") is None


async def test_a_job_waiting_for_ended_nodes_of_its_workflow_is_released_at_once(
    harness: BrokerHarness,
) -> None:
    broker, q = harness.broker, new_queue()
    a = node(q, "a", "wf")
    await broker.enqueue([a])
    await run(broker, q, a.id)
    assert (await flow(broker, "wf")).status is WorkflowStatus.COMPLETED
    b = node(q, "b", "wf", a.id)
    delayed = node(q, "delayed", "wf", a.id)

    stored = await broker.enqueue([b, delayed], delays=[0.0, 30.0])

    assert [j.status for j in stored] == [JobStatus.PENDING, JobStatus.SCHEDULED]
    state = await flow(broker, "wf")  # the ended workflow gained nodes: it runs again
    assert [n.id for n in state.nodes] == [a.id, b.id, delayed.id]
    assert state.status is WorkflowStatus.RUNNING


@pytest.mark.parametrize(
    "case", ["no workflow", "unknown", "other workflow", "later in batch", "itself"]
)
async def test_a_bad_parent_is_a_value_error_naming_it_and_nothing_is_stored(
    harness: BrokerHarness, case: str
) -> None:
    broker, q = harness.broker, new_queue()
    elsewhere = node(q, "elsewhere", "wf-other")
    await broker.enqueue([elsewhere])
    first = node(q, "first", "wf")
    parent = {
        "no workflow": first.id,
        "unknown": f"{q}-never",
        "other workflow": elsewhere.id,
        "later in batch": f"{q}-later",
        "itself": f"{q}-bad",
    }[case]
    bad = node(q, "bad", None if case == "no workflow" else "wf", parent)
    later = node(q, "later", "wf")

    with pytest.raises(ValueError, match=r"job .*") as caught:
        await broker.enqueue([first, bad, later])

    assert bad.id in str(caught.value)
    if case != "no workflow":  # check_after's text names the job only
        assert parent in str(caught.value)
    for job in (first, bad, later):
        assert await broker.get(job.id) is None
    assert await broker.workflow("wf") is None
    stats = (await broker.stats([q]))[q]
    assert (stats.queued, stats.deferred) == (1, 0)


async def test_unknown_workflows_and_nodes_read_as_none(harness: BrokerHarness) -> None:
    broker, q = harness.broker, new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    await broker.enqueue([a, b])
    await run(broker, q, a.id)

    assert await broker.workflow("no-such-workflow") is None
    assert await broker.workflow_results("no-such-workflow", [a.id]) == [None]
    assert await broker.workflow_results("wf", [b.id, "nobody", a.id]) == [
        None,
        None,
        JobResult(success=True, value=a.id),
    ]
    assert await broker.workflow_results("wf", []) == []
