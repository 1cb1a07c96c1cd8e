"""What only the memory broker's workflows show: a buried record's end, a cascade down a chain
longer than Python's recursion limit, stale expiry entries, the book's copies, and its choices
where the contract is silent (an ended node whose record is gone is still a parent; a
finished node's id enqueued again joins again). The contract itself is checked by
``test_conformance_workflows*.py``.
"""

from __future__ import annotations

import sys

import pytest

from taskit.broker.memory import MemoryBroker
from taskit.broker.memory._testing import damage
from taskit.broker.memory.workflows import WorkflowBook
from taskit.clock import FakeClock
from taskit.job import JobResult, JobStatus, OutcomeKind
from tests.broker._helpers import new_queue
from tests.broker._workflows import flow, node, run, status, statuses, take, waited

pytestmark = pytest.mark.anyio

TTL = 10.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> MemoryBroker:
    return MemoryBroker(clock=clock, result_ttl=TTL)


@pytest.mark.parametrize(
    ("field", "value"),
    [("attempts", 1.5), ("result", JobResult(success=True, value=object()))],
)
async def test_a_node_buried_for_an_unreadable_record_fails_its_dependents(
    broker: MemoryBroker, field: str, value: object
) -> None:
    q = new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    await broker.enqueue([a, b])
    damage(broker, a.id, field, value)

    assert await take(broker, q) == {}  # a is dead-lettered on the way out

    state = await flow(broker, "wf")
    assert statuses(state) == {a.id: JobStatus.DEAD_LETTER, b.id: JobStatus.FAILED}
    buried = state.nodes[0].result
    assert buried is not None
    assert (buried.success, buried.error_type) == (False, "CorruptJobError")
    job_b = await broker.get(b.id)
    assert job_b is not None
    assert (job_b.error_type, job_b.error) == (
        "DependencyFailed",
        waited(a.id, JobStatus.DEAD_LETTER, buried.error),
    )


async def test_a_cancel_cascades_down_a_chain_longer_than_the_recursion_limit(
    broker: MemoryBroker,
) -> None:
    q = new_queue()
    length = sys.getrecursionlimit() + 200
    chain = [node(q, "n0", "wf")]
    for i in range(1, length):
        chain.append(node(q, f"n{i}", "wf", chain[-1].id))
    await broker.enqueue(chain)

    assert await broker.cancel(chain[0].id)

    state = await flow(broker, "wf")
    assert {n.status for n in state.nodes} == {JobStatus.CANCELLED}
    last = await broker.get(chain[-1].id)
    assert last is not None
    assert last.error == waited(chain[-2].id, JobStatus.CANCELLED, "job was cancelled")
    assert (await broker.stats([q]))[q].deferred == 0


async def test_a_workflow_that_gained_a_node_after_it_ended_expires_after_its_new_end(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    q = new_queue()
    a = node(q, "a", "wf", result_ttl=1000.0)
    await broker.enqueue([a])
    await run(broker, q, a.id, result_ttl=1000.0)  # ended at 0: would expire at TTL
    clock.advance(TTL / 2)
    b = node(q, "b", "wf", a.id, result_ttl=1000.0)
    await broker.enqueue([b])
    await run(broker, q, b.id, result_ttl=1000.0)  # ended again at TTL / 2

    clock.advance(TTL / 2 + 1)  # past the first end's expiry: a stale entry now
    assert [n.id for n in (await flow(broker, "wf")).nodes] == [a.id, b.id]

    clock.advance(TTL / 2)
    assert await broker.workflow("wf") is None


async def test_an_ended_node_whose_record_is_gone_is_still_a_parent(
    broker: MemoryBroker,
) -> None:
    q = new_queue()
    a = node(q, "a", "wf", result_ttl=0.0)
    await broker.enqueue([a])
    await run(broker, q, a.id, result=JobResult(success=True, value=1), result_ttl=0.0)
    assert await broker.get(a.id) is None

    [b] = await broker.enqueue([node(q, "b", "wf", a.id)])

    assert b.status is JobStatus.PENDING
    with pytest.raises(ValueError, match="of another workflow"):
        await broker.enqueue([node(q, "c", "wf-other", a.id)])


async def test_a_finished_nodes_id_enqueued_again_joins_its_workflow_again(
    broker: MemoryBroker,
) -> None:
    q = new_queue()
    a = node(q, "a", "wf")
    await broker.enqueue([a])
    await run(broker, q, a.id, kind=OutcomeKind.FAIL, error="first")

    await broker.enqueue([a, node(q, "b", "wf", a.id)])

    state = await flow(broker, "wf")
    assert statuses(state) == {a.id: JobStatus.PENDING, f"{q}-b": JobStatus.DEFERRED}
    await run(broker, q, a.id)
    assert await status(broker, f"{q}-b") is JobStatus.PENDING


async def test_what_the_book_answers_is_a_copy(broker: MemoryBroker) -> None:
    q = new_queue()
    a = node(q, "a", "wf")
    await broker.enqueue([a])
    await run(broker, q, a.id, result=JobResult(success=True, value=[1]))
    [result] = await broker.workflow_results("wf", [a.id])
    assert result is not None
    result.value.append(2)
    state = await flow(broker, "wf")
    assert state.nodes[0].result is not None
    state.nodes[0].result.value.append(3)

    assert await broker.workflow_results("wf", [a.id]) == [JobResult(success=True, value=[1])]


def test_a_job_of_no_workflow_ending_changes_nothing_in_the_book() -> None:
    book = WorkflowBook()
    assert book.ended("nobody", JobStatus.COMPLETED, JobResult(success=True), 0.0, TTL) == []
    assert book.open_nodes("wf") == []
    assert book.state("wf", lambda _: JobStatus.PENDING) is None
    assert book.results("wf", ["x"]) == [None]
    book.expire(1e12)  # nothing to expire: no error
    assert book.results("wf", []) == []


async def test_a_plain_job_replacing_another_workflows_node_is_adopted_by_the_new_one(
    broker: MemoryBroker,
) -> None:
    q = new_queue()
    old = node(q, "p", "wf-old")
    await broker.enqueue([old])
    await run(broker, q, old.id)
    plain = node(q, "p", None)  # the same id, finished: replaced by this enqueue
    child = node(q, "child", "wf-new", plain.id)

    await broker.enqueue([plain, child])

    assert [n.id for n in (await flow(broker, "wf-new")).nodes] == [plain.id, child.id]
    await run(broker, q, plain.id)
    assert await status(broker, child.id) is JobStatus.PENDING
    assert statuses(await flow(broker, "wf-old")) == {old.id: JobStatus.COMPLETED}
