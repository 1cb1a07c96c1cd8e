"""What only the SQLite broker's workflows show: ends made through another connection to the
file (another process's worker) applied to workflows it did not enqueue, a workflow kept in
the file across a reopen, a buried record's end, a cascade down a chain longer than Python's
recursion limit in one transaction, every noted end applied in the call that made it, and the
choices the memory broker makes where the contract is silent (``test_memory_workflows``). The
contract itself is checked by ``test_conformance_workflows*.py`` (the ``sqlite`` kind).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskit.broker.sqlite import SqliteBroker
from taskit.clock import FakeClock
from taskit.job import JobResult, JobStatus, OutcomeKind
from tests.broker._helpers import new_queue
from tests.broker._workflows import flow, node, run, status, statuses, take, waited

pytestmark = pytest.mark.anyio

TTL = 10.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def broker(db: Path, clock: FakeClock) -> AsyncIterator[SqliteBroker]:
    made = SqliteBroker(db, clock=clock, result_ttl=TTL)
    yield made
    await made.close()


def noted_ends(db: Path) -> int:
    """How many ends the triggers noted that no call applied (always 0 between calls)."""
    with sqlite3.connect(db) as raw:
        (count,) = raw.execute("SELECT count(*) FROM wf_ends").fetchone()
    raw.close()
    return int(count)


async def test_an_end_made_through_another_connection_releases_and_fails_dependents(
    broker: SqliteBroker, db: Path, clock: FakeClock
) -> None:
    q = new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    c = node(q, "c", "wf", f"{q}-b")
    await broker.enqueue([a, b, c])
    other = SqliteBroker(db, clock=clock, result_ttl=TTL)  # another worker on the same file
    try:
        await run(other, q, a.id)
        assert await status(broker, b.id) is JobStatus.PENDING
        await run(other, q, b.id, kind=OutcomeKind.FAIL, error="boom")
    finally:
        await other.close()

    await broker.close()  # everything is in the file: a reopened broker reads it
    state = await flow(broker, "wf")
    assert statuses(state) == {a.id: JobStatus.COMPLETED, b.id: JobStatus.FAILED,
                               c.id: JobStatus.FAILED}  # fmt: skip
    job_c = await broker.get(c.id)
    assert job_c is not None
    assert (job_c.error_type, job_c.error) == (
        "DependencyFailed",
        waited(b.id, JobStatus.FAILED, "boom"),
    )
    assert noted_ends(db) == 0


async def test_enqueue_blocking_ends_a_dependent_of_a_failed_parent_at_once(
    broker: SqliteBroker, db: Path
) -> None:
    q = new_queue()
    a = node(q, "a", "wf")
    await broker.enqueue([a])
    await run(broker, q, a.id, kind=OutcomeKind.FAIL, error="boom")

    stored = broker.enqueue_blocking([node(q, "b", "wf", a.id), node(q, "c", "wf", f"{q}-b")])

    assert stored is not None
    assert [(j.status, j.error) for j in stored] == [
        (JobStatus.FAILED, waited(a.id, JobStatus.FAILED, "boom")),
        (JobStatus.FAILED, waited(a.id, JobStatus.FAILED, "boom")),  # the cascade's start
    ]
    assert (await broker.stats([q]))[q].deferred == 0
    assert noted_ends(db) == 0


async def test_a_node_buried_for_an_unreadable_record_fails_its_dependents(
    broker: SqliteBroker, db: Path
) -> None:
    q = new_queue()
    a, b = node(q, "a", "wf"), node(q, "b", "wf", f"{q}-a")
    await broker.enqueue([a, b])
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE jobs SET spec = x'c1' WHERE id = ?", (a.id,))
    raw.close()

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
    broker: SqliteBroker, db: Path
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
    assert noted_ends(db) == 0


async def test_a_workflow_that_gained_a_node_after_it_ended_expires_after_its_new_end(
    broker: SqliteBroker, clock: FakeClock
) -> None:
    q = new_queue()
    a = node(q, "a", "wf", result_ttl=1000.0)
    await broker.enqueue([a])
    await run(broker, q, a.id, result_ttl=1000.0)  # ended at 0: would expire at TTL
    clock.advance(TTL / 2)
    b = node(q, "b", "wf", a.id, result_ttl=1000.0)
    await broker.enqueue([b])
    await run(broker, q, b.id, result_ttl=1000.0)  # ended again at TTL / 2

    clock.advance(TTL / 2 + 1)  # past the first end's expiry
    assert [n.id for n in (await flow(broker, "wf")).nodes] == [a.id, b.id]

    clock.advance(TTL / 2)
    assert await broker.workflow("wf") is None
    assert await broker.workflow_results("wf", [a.id]) == [None]
    assert await broker.cancel_workflow("wf") == 0


async def test_an_ended_node_whose_record_is_gone_is_still_a_parent(
    broker: SqliteBroker,
) -> None:
    q = new_queue()
    a = node(q, "a", "wf", result_ttl=0.0)
    await broker.enqueue([a])
    await run(broker, q, a.id, result=JobResult(success=True, value=1), result_ttl=0.0)
    assert await broker.get(a.id) is None

    [b] = await broker.enqueue([node(q, "b", "wf", a.id)])

    assert b.status is JobStatus.PENDING
    assert await broker.workflow_results("wf", [a.id]) == [JobResult(success=True, value=1)]
    with pytest.raises(ValueError, match="of another workflow"):
        await broker.enqueue([node(q, "c", "wf-other", a.id)])


async def test_a_finished_nodes_id_enqueued_again_joins_its_workflow_again(
    broker: SqliteBroker,
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


async def test_a_plain_job_replacing_another_workflows_node_is_adopted_by_the_new_one(
    broker: SqliteBroker,
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
