"""taskit.canvas builds workflows: each shape becomes jobs wired by ``Job.after`` (what each node
waits for, what it is fed, what a failure does to it), every task option applies per node, and
what cannot work is refused when it is built, naming the problem."""

from __future__ import annotations

from typing import Any

import pytest

from taskit import App, Job, JobResult, MemoryBroker, Settings, Throttle, chain, chord, group
from taskit.dependencies import Feed, IfFailed
from taskit.errors import PayloadTooLargeError
from taskit.job import JobStatus

pytestmark = pytest.mark.anyio

app = App(MemoryBroker())


@app.task(queue="math", priority=3, max_retries=7, result_ttl=60.0)
async def add(a: int, b: int) -> int:
    return a + b


@app.task
async def mul(x: int, y: int = 1) -> int:
    return x * y


@app.task
async def total(values: list[int]) -> int:
    return sum(values)


@app.task
async def shout(text: str) -> str:
    return text.upper()


@app.task
async def floaty(x: float) -> float:
    return x


@app.task
async def anything(x: Any) -> None:
    pass


@app.task
async def nothing() -> int:
    return 0


@app.task
async def keywords_only(*, x: int) -> int:
    return x


@app.task
async def summary(results: list[JobResult]) -> int:
    return len(results)


async def plus(a: int, b: int) -> int:
    return a + b


async def times(x: int, y: int = 1) -> int:
    return x * y


async def echo_text(text: str) -> str:
    return text


def wiring(jobs: list[Job]) -> list[tuple[str, tuple[int, ...], Feed, IfFailed] | tuple[str]]:
    """Each job as (short task name, indexes of the jobs it waits for, feed, if_failed)."""
    index = {job.id: i for i, job in enumerate(jobs)}
    out: list[tuple[str, tuple[int, ...], Feed, IfFailed] | tuple[str]] = []
    for job in jobs:
        name = job.task.rsplit(".", 1)[-1]
        if job.after is None:
            out.append((name,))
        else:
            parents = tuple(index[p] for p in job.after.jobs)
            out.append((name, parents, job.after.feed, job.after.if_failed))
    return out


ONE, ALL, NONE = Feed.ONE, Feed.ALL, Feed.NONE
FAIL, CONTINUE = IfFailed.FAIL, IfFailed.CONTINUE


def test_a_chain_feeds_each_step_the_one_result_before_it() -> None:
    jobs = chain(add.s(1, 2), mul.step(3), mul.step(y=4)).jobs("wf-1")
    assert wiring(jobs) == [("add",), ("mul", (0,), ONE, FAIL), ("mul", (1,), ONE, FAIL)]
    assert {job.workflow for job in jobs} == {"wf-1"}
    assert len({job.id for job in jobs}) == 3


def test_a_chord_feeds_its_callback_every_members_result() -> None:
    jobs = chord(group(add.s(1, 2), add.s(3, 4), add.s(5, 6)), total.step()).jobs("wf")
    assert wiring(jobs) == [("add",), ("add",), ("add",), ("total", (0, 1, 2), ALL, FAIL)]


def test_a_chord_of_one_member_still_feeds_a_list() -> None:
    jobs = chord(group(add.s(1, 2)), total.step()).jobs("wf")
    assert wiring(jobs) == [("add",), ("total", (0,), ALL, FAIL)]


def test_continue_is_the_policy_of_the_edges_it_was_given_to() -> None:
    jobs = chord(group(add.s(1, 2), add.s(3, 4)), summary.step(), if_failed="continue").jobs()
    assert wiring(jobs) == [("add",), ("add",), ("summary", (0, 1), ALL, CONTINUE)]
    jobs = chain(add.s(1, 2), anything.step(), mul.s(2), if_failed=IfFailed.CONTINUE).jobs()
    assert wiring(jobs) == [
        ("add",),
        ("anything", (0,), ONE, CONTINUE),
        ("mul", (1,), NONE, CONTINUE),
    ]


def test_a_call_in_a_chain_only_waits() -> None:
    jobs = chain(add.s(1, 2), mul.s(5, 6)).jobs()
    assert wiring(jobs) == [("add",), ("mul", (0,), NONE, FAIL)]


def test_a_bounded_map_is_a_sliding_window_whose_members_do_not_fail_each_other() -> None:
    jobs = add.map([(i, i) for i in range(5)], concurrency=2).jobs()
    assert wiring(jobs) == [
        ("add",), ("add",),
        ("add", (0,), NONE, CONTINUE), ("add", (1,), NONE, CONTINUE), ("add", (2,), NONE, CONTINUE),
    ]  # fmt: skip
    unbounded = add.map([(1, 2), (3, 4)]).jobs()
    assert wiring(unbounded) == [("add",), ("add",)]


def test_nested_shapes_wire_through_their_entries_and_exits() -> None:
    # a chain of a group, a chord and a step; a group of chains feeds their last nodes
    jobs = chain(
        group(chain(add.s(1, 1), mul.step(2)), add.s(2, 2)),
        total.step(),
        chord(group(mul.s(1), mul.s(2)), total.step()),
    ).jobs()
    assert wiring(jobs) == [
        ("add",), ("mul", (0,), ONE, FAIL), ("add",),
        ("total", (1, 2), ALL, FAIL),
        ("mul", (3,), NONE, FAIL), ("mul", (3,), NONE, FAIL),
        ("total", (4, 5), ALL, FAIL),
    ]  # fmt: skip


def test_a_step_after_a_chain_ending_in_a_group_gets_the_list() -> None:
    jobs = chain(chain(add.s(1, 1), group(mul.s(1), mul.s(2))), total.step()).jobs()
    assert wiring(jobs) == [
        ("add",), ("mul", (0,), NONE, FAIL), ("mul", (0,), NONE, FAIL),
        ("total", (1, 2), ALL, FAIL),
    ]  # fmt: skip


def test_the_pipe_operator_makes_one_flat_chain() -> None:
    piped = add.s(1, 2) | mul.step(3) | mul.step(4)
    assert len(piped.links) == 3
    assert wiring(piped.jobs()) == wiring(chain(add.s(1, 2), mul.step(3), mul.step(4)).jobs())


def test_every_task_option_applies_per_node_and_each_node_has_a_fresh_id() -> None:
    call = add.s(1, 2)
    first, second = call.jobs(), call.jobs()
    assert first[0].id != second[0].id  # a call enqueued twice is two jobs
    (job,) = first
    assert (job.queue, job.priority, job.max_retries, job.result_ttl) == ("math", 3, 7, 60.0)
    varied = chain(add.options(queue="fast", priority=9).s(1, 2), mul.options(timeout=5.0).step(2))
    a, m = varied.jobs()
    assert (a.queue, a.priority, m.timeout) == ("fast", 9, 5.0)
    assert list(a.args) == [1, 2]
    assert list(m.args) == [2]
    assert add.options(job_id="mine").s(1, 2).jobs()[0].id == "mine"


def test_a_given_job_id_used_twice_in_one_workflow_is_refused() -> None:
    fixed = add.options(job_id="twice").s(1, 2)
    with pytest.raises(ValueError, match=r"'twice'.*used twice"):
        group(fixed, fixed).jobs()


# -- refused when built ------------------------------------------------------------------------
def test_a_fed_type_that_does_not_fit_names_both_tasks() -> None:
    with pytest.raises(TypeError, match=r"task '.*shout' cannot be fed by task '.*add'.*str.*int"):
        chain(add.s(1, 2), shout.step())  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"total.*list\[int\].*int"):
        add.s(1, 2) | total.step()  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"mul.*takes int.*list\[int\]"):
        chord(group(add.s(1, 2)), mul.step())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"total.*list\[JobResult\]"):
        chord(group(add.s(1, 2)), total.step(), if_failed="continue")  # type: ignore[call-overload]


def test_fed_types_that_fit_or_cannot_be_judged_pass() -> None:
    chain(add.s(1, 2), floaty.step())  # an int fits a float
    chain(shout.s("a"), anything.step())  # Any takes anything
    chain(nothing.s(), mul.step())
    chord(group(add.s(1, 2)), summary.step(), if_failed="continue")


def test_a_step_needs_a_parameter_to_feed_and_arguments_that_bind() -> None:
    with pytest.raises(TypeError, match="no positional first parameter"):
        nothing.step()  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no positional first parameter"):
        keywords_only.step(x=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="too many positional arguments"):
        mul.step(1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        mul.step(x=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="argument 'y' must be int"):
        mul.step("3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="argument 'b' must be int"):
        add.s(1, "2")  # type: ignore[arg-type]


def test_what_has_nothing_to_feed_it_is_refused() -> None:
    with pytest.raises(TypeError, match="nothing to feed it"):
        chain(mul.step(2))  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="nothing to feed it"):
        group(mul.step(2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a chord's header is a group"):
        chord(add.s(1, 2), total.step())  # type: ignore[call-overload]


def test_bad_groups_and_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        group()
    with pytest.raises(ValueError, match="at least one member"):
        add.map([])
    bad: Any
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="concurrency must be an int >= 1"):
            add.map([(1, 2)], concurrency=bad)
    with pytest.raises(TypeError, match="gives a list"):
        group(group(add.s(1, 2)))
    with pytest.raises(TypeError, match="must be a tuple or list"):
        add.map(["ab"])
    with pytest.raises(TypeError, match="argument 'b' must be int"):
        add.map([(1, 2), (3, "4")])
    with pytest.raises(ValueError, match="at least one link"):
        chain()  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="if_failed must be 'fail' or 'continue'"):
        chain(add.s(1, 2), if_failed="maybe")  # type: ignore[call-overload]


def test_a_bounded_map_cannot_wait_for_an_earlier_step() -> None:
    # its window would release members whose step failed; first in a chain it is fine
    with pytest.raises(ValueError, match="concurrency bound cannot wait"):
        chain(add.s(1, 2), add.map([(1, 2), (3, 4)], concurrency=1)).jobs()
    chain(add.map([(1, 2), (3, 4)], concurrency=1), total.step()).jobs()


# -- enqueued in one call ----------------------------------------------------------------------
async def test_enqueue_stores_every_node_in_one_broker_call() -> None:
    broker = MemoryBroker()
    local = App(broker)
    plus_task = local.task(name="plus")(plus)
    times_task = local.task(name="times")(times)
    calls: list[int] = []
    original = broker.enqueue

    async def counting(jobs: Any, **kwargs: Any) -> list[Job]:
        calls.append(len(jobs))
        return await original(jobs, **kwargs)

    broker.enqueue = counting  # type: ignore[method-assign]
    wf = await chain(plus_task.s(1, 2), times_task.step(3)).enqueue()
    assert calls == [2]
    state = await wf.state()
    assert [node.task for node in state.nodes] == ["plus", "times"]
    assert [node.status for node in state.nodes] == [JobStatus.PENDING, JobStatus.DEFERRED]


async def test_a_node_refused_stores_no_node() -> None:
    broker = MemoryBroker()
    local = App(broker, settings=Settings(max_payload_bytes=1024))
    echo = local.task(name="echo")(echo_text)
    with pytest.raises(PayloadTooLargeError):
        await group(echo.s("small"), echo.s("x" * 2000)).enqueue()
    assert sum(stats.queued for stats in (await broker.stats()).values()) == 0


async def test_a_workflow_lives_in_one_broker() -> None:
    other = App(MemoryBroker()).task(name="elsewhere")(plus)
    with pytest.raises(ValueError, match="another broker"):
        group(add.s(1, 2), other.s(3, 4)).jobs()


def test_keys_of_a_step_come_from_its_bound_arguments_never_its_fed_one() -> None:
    @app.task(name="fair_by_first", fair_by="x")
    async def by_first(x: int, y: int) -> int:
        return x

    @app.task(name="fair_by_second", fair_by="y")
    async def by_second(x: int, y: int) -> int:
        return x

    assert chain(add.s(1, 2), by_second.step(7)).jobs()[1].group == "7"
    with pytest.raises(TypeError, match="cannot come from its fed argument"):
        by_first.step(7)


def test_a_task_with_a_dedup_window_cannot_be_a_node() -> None:
    @app.task(name="throttled", dedup=Throttle(60.0))
    async def throttled(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="has a dedup window, so it cannot be a workflow node"):
        throttled.s(1)
