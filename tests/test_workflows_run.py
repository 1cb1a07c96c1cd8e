"""Workflows end to end on the memory broker with a real worker: each node is fed what it waits
for, results come back typed and in order, failures and cancels end every node and are named,
and ``depends_on`` joins a workflow."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import msgspec
import pytest

from taskit import (
    App,
    BrokerConnectionError,
    EventKind,
    JobEvent,
    JobResult,
    JobStatus,
    MemoryBroker,
    ResultTimeoutError,
    Workflow,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFoundError,
    WorkflowStatus,
    chain,
    chord,
    group,
)
from taskit.execution import Executor, RunningJob
from taskit.job import Lease
from taskit.service import JobService

pytestmark = pytest.mark.anyio


class Point(msgspec.Struct):
    x: int
    y: int


class Probe:
    """How many ``slow`` jobs run at once, at most."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0


def make_app() -> tuple[App, dict[str, Any]]:
    app = App(MemoryBroker())
    probe = Probe()

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="mul")
    async def mul(x: int, y: int = 1) -> int:
        return x * y

    @app.task(name="total")
    async def total(values: list[int]) -> int:
        return sum(values)

    @app.task(name="boom", max_retries=0)
    async def boom(a: int) -> int:
        raise ValueError(f"boom {a}")

    @app.task(name="report")
    async def report(results: list[JobResult]) -> list[str]:
        return ["ok" if r.success else f"{r.error_type}: {r.error}" for r in results]

    @app.task(name="point")
    def point(x: int) -> Point:
        return Point(x, x + 1)

    @app.task(name="norm")
    def norm(p: Point) -> int:
        assert isinstance(p, Point)  # converted to the annotation, as any argument
        return p.x + p.y

    @app.task(name="loose")
    async def loose(a: int) -> Any:
        return f"text {a}"

    @app.task(name="slow")
    async def slow(i: int) -> int:
        probe.now += 1
        probe.most = max(probe.most, probe.now)
        await anyio.sleep(0.01)
        probe.now -= 1
        return i

    names = ("add", "mul", "total", "boom", "report", "point", "norm", "loose", "slow")
    tasks: dict[str, Any] = {name: app.tasks[name] for name in names}
    tasks["probe"] = probe
    return app, tasks


async def run_all(app: App, concurrency: int = 4) -> None:
    await app.worker(concurrency=concurrency).run(burst=True)


async def test_a_chain_feeds_each_step_and_returns_the_last_value() -> None:
    app, t = make_app()
    wf: Workflow[Any] = await chain(
        t["add"].s(1, 2), t["mul"].step(3), t["mul"].step(y=4)
    ).enqueue()
    await run_all(app)
    assert await wf.result(timeout=5) == 36
    state = await wf.state()
    assert state.status is WorkflowStatus.COMPLETED
    assert [n.result.value for n in state.nodes if n.result] == [3, 9, 36]


async def test_a_group_gives_its_members_values_in_order_and_a_chord_feeds_them() -> None:
    app, t = make_app()
    g = await group(*(t["slow"].s(i) for i in range(6))).enqueue()
    c = await chord(group(t["add"].s(1, 2), t["add"].s(3, 4)), t["total"].step()).enqueue()
    await run_all(app, concurrency=6)
    assert await g.result(timeout=5) == [0, 1, 2, 3, 4, 5]
    assert await c.result(timeout=5) == 10


async def test_a_result_is_converted_to_the_fed_parameters_annotation() -> None:
    app, t = make_app()
    wf = await (t["point"].s(2) | t["norm"].step()).enqueue()
    await run_all(app)
    assert await wf.result(timeout=5) == 5


async def test_a_bounded_map_runs_at_most_k_at_once_and_keeps_order() -> None:
    app, t = make_app()
    wf = await t["slow"].map([(i,) for i in range(8)], concurrency=2).enqueue()
    await run_all(app, concurrency=8)
    assert await wf.result(timeout=5) == list(range(8))
    assert t["probe"].most == 2


async def test_a_failed_node_fails_what_waits_for_it_and_is_named() -> None:
    app, t = make_app()
    wf: Workflow[Any] = await chain(t["add"].s(1, 2), t["boom"].step(), t["mul"].step(2)).enqueue()
    await run_all(app)
    with pytest.raises(WorkflowFailed) as caught:
        await wf.result(timeout=5)
    state = await wf.state()
    add_node, boom_node, mul_node = state.nodes
    error = caught.value
    assert not isinstance(error, WorkflowCancelled)
    assert (error.node_id, error.task, error.status) == (boom_node.id, "boom", "dead_letter")
    assert (error.error_type, error.error) == ("ValueError", "boom 3")
    assert f"node {boom_node.id!r} (task 'boom') ended dead_letter: ValueError: boom 3" in str(
        error
    )
    assert add_node.status is JobStatus.COMPLETED
    assert mul_node.status is JobStatus.FAILED
    assert mul_node.result is not None
    assert mul_node.result.error_type == "DependencyFailed"
    assert state.status is WorkflowStatus.FAILED


async def test_a_failed_map_member_does_not_fail_its_siblings() -> None:
    app, t = make_app()
    wf = await t["boom"].map([(1,), (2,), (3,)], concurrency=1).enqueue()
    await run_all(app)
    state = await wf.state()
    assert [n.status for n in state.nodes] == [JobStatus.DEAD_LETTER] * 3  # each ran
    assert [n.result.error for n in state.nodes if n.result] == ["boom 1", "boom 2", "boom 3"]


async def test_continue_feeds_the_callback_every_result_failures_included() -> None:
    app, t = make_app()
    header = group(t["add"].s(1, 2), t["boom"].s(7))
    wf = await chord(header, t["report"].step(), if_failed="continue").enqueue()
    await run_all(app)
    assert await wf.result(timeout=5) == ["ok", "ValueError: boom 7"]
    assert (await wf.state()).status is WorkflowStatus.FAILED  # a node failed, yet it gave a result


async def test_a_fed_value_that_does_not_fit_fails_the_step_like_an_unfit_argument() -> None:
    app, t = make_app()
    wf: Workflow[Any] = await chain(
        t["loose"].s(1), t["mul"].step()
    ).enqueue()  # Any: not checked when built
    await run_all(app)
    with pytest.raises(WorkflowFailed) as caught:
        await wf.result(timeout=5)
    assert caught.value.task == "mul"
    assert caught.value.error_type == "SerializationError"
    assert "argument 'x'" in (caught.value.error or "")


async def test_cancel_ends_every_node_and_the_result_says_cancelled() -> None:
    _app, t = make_app()
    wf: Workflow[Any] = await chain(t["add"].s(1, 2), t["mul"].step(3)).enqueue()
    assert await wf.cancel() == 2
    assert await wf.cancel() == 0
    state = await wf.state()
    assert [n.status for n in state.nodes] == [JobStatus.CANCELLED] * 2
    with pytest.raises(WorkflowCancelled) as caught:
        await wf.result(timeout=5)
    assert caught.value.node_id == state.nodes[0].id  # the cause, not the echo
    assert isinstance(caught.value, WorkflowFailed)


async def test_waiting_times_out_and_an_unknown_id_is_named() -> None:
    app, t = make_app()
    wf = await t["add"].s(1, 2).enqueue()
    with pytest.raises(ResultTimeoutError, match=r"did not finish within 0\.05 s"):
        await wf.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        await wf.result(timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        await wf.result(timeout=-1)
    unknown = app.workflow("no-such-workflow")
    with pytest.raises(WorkflowNotFoundError, match="no-such-workflow"):
        await unknown.state()
    with pytest.raises(WorkflowNotFoundError):
        await unknown.result(timeout=1)
    assert await unknown.cancel() == 0


async def test_a_handle_from_an_id_returns_its_sinks_values() -> None:
    app, t = make_app()
    one: Workflow[Any] = await chain(t["add"].s(1, 2), t["mul"].step(5)).enqueue()
    many = await group(t["add"].s(1, 1), t["add"].s(2, 2)).enqueue()
    await run_all(app)
    assert await app.workflow(one.id).result(timeout=5) == 15
    assert await app.workflow(many.id).result(timeout=5) == [2, 4]


# -- depends_on --------------------------------------------------------------------------------
async def test_depends_on_waits_for_existing_jobs_and_joins_their_workflow() -> None:
    app, t = make_app()
    first = await t["add"].enqueue(1, 2)
    second = await t["add"].enqueue(3, 4)
    job = await t["mul"].options(depends_on=[first, second.id]).enqueue(5)
    assert job.status is JobStatus.DEFERRED
    assert job.workflow is not None
    assert job.after is not None
    assert job.after.jobs == (first.id, second.id)
    later = await t["mul"].options(depends_on=[job]).enqueue(6)
    assert later.workflow == job.workflow  # a parent's workflow is found through the broker
    await run_all(app)
    state = await app.workflow(job.workflow).state()
    assert [n.id for n in state.nodes] == [first.id, second.id, job.id, later.id]
    assert state.status is WorkflowStatus.COMPLETED
    assert await app.workflow(job.workflow).result(timeout=5) == 6


async def test_depends_on_refuses_parents_of_two_workflows_and_prepare() -> None:
    app, t = make_app()
    a = await t["add"].s(1, 2).enqueue()
    b = await t["add"].s(3, 4).enqueue()
    node_a = (await a.state()).nodes[0].id
    node_b = (await b.state()).nodes[0].id
    with pytest.raises(ValueError, match="different workflows") as caught:
        await t["mul"].options(depends_on=[node_a, node_b]).enqueue(1)
    assert a.id in str(caught.value)
    assert b.id in str(caught.value)
    with pytest.raises(ValueError, match="use enqueue"):
        t["mul"].options(depends_on=[node_a]).prepare(1)
    with pytest.raises(ValueError, match="never-stored"):  # the broker names the unknown parent
        await t["mul"].options(depends_on=["never-stored"]).enqueue(1)
    assert sum(s.deferred for s in (await app.stats()).values()) == 0


async def test_depends_on_through_the_job_service_and_a_failed_parent() -> None:
    app, t = make_app()
    parent = await t["boom"].enqueue(1)
    service = JobService(app)
    child = await service.create_job("mul", {"x": 2}, depends_on=[parent])
    assert child.status is JobStatus.DEFERRED
    await run_all(app)
    ended = await app.get_job(child.id)
    assert ended is not None
    assert ended.status is JobStatus.FAILED
    assert ended.error_type == "DependencyFailed"


# -- sync, and the executor alone ---------------------------------------------------------------
def test_the_sync_spellings() -> None:
    app, t = make_app()
    wf: Workflow[Any] = chain(t["add"].s(2, 3), t["mul"].step(2)).enqueue_sync()
    assert wf.state_sync().status is WorkflowStatus.RUNNING
    app.run_sync(functools.partial(run_all, app))
    assert wf.result_sync(timeout=5) == 10
    assert wf.cancel_sync() == 0
    job = t["mul"].options(depends_on=[wf.state_sync().nodes[-1].id]).enqueue_sync(1)
    assert job.workflow == wf.id
    app.close_sync()


async def test_an_executor_without_a_broker_fails_a_fed_job_naming_why() -> None:
    app, t = make_app()
    builder = chain(t["add"].s(1, 2), t["mul"].step()).jobs("wf")
    fed = builder[1]
    executor = Executor(app.tasks, anyio.CapacityLimiter(1))
    lease = Lease(job=fed, token="t", deadline=0.0)
    outcome = await executor.execute(RunningJob(lease))
    assert outcome is not None
    assert outcome.kind.value == "fail"
    assert "no broker to read them from" in (outcome.error or "")


async def test_continue_in_a_chain_feeds_the_one_jobresult() -> None:
    app, t = make_app()

    @app.task(name="describe")
    async def describe(result: JobResult) -> str:
        return "ok" if result.success else f"failed: {result.error}"

    wf: Workflow[Any] = await chain(t["boom"].s(4), describe.step(), if_failed="continue").enqueue()
    await run_all(app)
    assert await wf.result(timeout=5) == "failed: boom 4"


class FlakyResults(MemoryBroker):
    """A memory broker whose first ``workflow_results`` call fails as an outage would."""

    failures = 1

    async def workflow_results(self, workflow_id: str, job_ids: Any) -> list[JobResult | None]:
        if self.failures:
            self.failures -= 1
            raise BrokerConnectionError("the broker is away")
        return await super().workflow_results(workflow_id, job_ids)


async def test_a_broker_error_while_reading_the_fed_results_retries_the_step() -> None:
    app = App(FlakyResults())

    @app.task(name="one")
    async def one() -> int:
        return 1

    @app.task(name="inc", backoff=0.0)
    async def inc(x: int) -> int:
        return x + 1

    wf = await chain(one.s(), inc.step()).enqueue()
    stats = await app.worker().run(burst=True)
    assert stats.retried == 1
    assert await wf.result(timeout=5) == 2
    node = (await wf.state()).nodes[1]
    job = await app.get_job(node.id)
    assert job is not None
    assert job.attempts == 2


async def test_nested_shapes_run_end_to_end() -> None:
    app, t = make_app()
    add, mul, total = t["add"], t["mul"], t["total"]
    # a group of a chain and a chord, then a step fed their two results, then a waiting call
    inner = group(
        chain(add.s(1, 1), mul.step(10)), chord(group(add.s(2, 2), add.s(3, 3)), total.step())
    )
    wf: Workflow[Any] = await chain(inner, total.step(), add.s(0, 1)).enqueue()
    await run_all(app)
    assert await wf.result(timeout=5) == 1
    values = [n.result.value for n in (await wf.state()).nodes if n.result]
    assert values == [2, 20, 4, 6, 10, 30, 1]  # total([20, 10]) == 30 before the last call


async def test_cancel_tells_the_event_subscribers_of_each_node_it_ended() -> None:
    app, t = make_app()
    heard: list[str] = []

    @app.on(EventKind.CANCELLED)
    def cancelled(event: JobEvent) -> None:
        heard.append(event.job_id)

    done = await t["add"].s(1, 1).enqueue()
    await run_all(app)
    wf: Workflow[Any] = await chain(t["add"].s(1, 2), t["mul"].step(3)).enqueue()
    assert await wf.cancel() == 2
    assert heard == [n.id for n in (await wf.state()).nodes]
    assert await done.cancel() == 0
    assert len(heard) == 2
