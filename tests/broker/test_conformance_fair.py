"""Broker conformance: fair turns over the groups of a queue (``Job.group``).

Every expected order below follows from the rules in ``Broker``'s docstring ("Fair queues"):
ready jobs of the default priority are served one per group per turn, FIFO within a group; the
ungrouped jobs take one turn like a group; a group enters the rotation after every group already
in it (it waits one round), or as the next turn when a job is put back at the front (release,
retry at once); it leaves with its last ready job. Each test lays out a state where a job routed
to the wrong structure (the FIFO list, or a group left in the rotation) would change the order.
On a sharded broker the turns are kept per shard: these tests use jobs of one shard (the ``job``
fixture); what holds across shards is in test_conformance_shards.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from taskit.broker.base import Broker
from taskit.fairness import MAX_GROUP
from taskit.job import Job, JobStatus, OutcomeKind
from tests.broker._helpers import LONG, make_job, new_queue, outcome
from tests.broker._sharded import shard_id
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

DELAY = 0.3
PAST_DELAY = 0.4


#: ``job(queue, name, group=None, **fields)``: the ``job`` fixture.
MakeJob = Callable[..., Job]


@pytest.fixture
def job(harness: BrokerHarness) -> MakeJob:
    """Makes a job whose id is ``name`` plus a unique tail, in ``group``; on a sharded broker
    every id is of one shard (``shard_id``), as the turns are kept among one shard's jobs."""

    def make(queue: str, name: str, group: str | None = None, **fields: Any) -> Job:
        made = make_job(queue, job_id=shard_id(harness.broker, f"{name}-"), **fields)
        return msgspec.structs.replace(made, group=group)

    return make


def names(jobs: list[Job]) -> list[str]:
    return [j.id.partition("-")[0] for j in jobs]


async def drain(broker: Broker, queue: str, count: int = 1) -> list[str]:
    """The names of every ready job of ``queue``, reserved ``count`` at a time."""
    taken: list[Job] = []
    while leases := await broker.reserve([queue], count=count, lease=LONG, timeout=0):
        taken += [lease.job for lease in leases]
    return names(taken)


async def test_groups_take_turns_fifo_within_each(harness: BrokerHarness, job: MakeJob) -> None:
    q = new_queue()
    await harness.broker.enqueue(
        [
            job(q, "a1", "a"),
            job(q, "a2", "a"),
            job(q, "a3", "a"),
            job(q, "b1", "b"),
            job(q, "b2", "b"),
            job(q, "c1", "c"),
        ]
    )

    assert await drain(harness.broker, q) == ["a1", "b1", "c1", "a2", "b2", "a3"]


async def test_the_order_is_the_same_in_one_call_as_one_by_one(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    jobs = [job(q, f"{g}{i}", g) for g in "abc" for i in range(3)]
    await harness.broker.enqueue(jobs)

    assert await drain(harness.broker, q, count=4) == [
        "a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"
    ]  # fmt: skip


async def test_ungrouped_jobs_take_one_turn_like_a_group(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    await harness.broker.enqueue([job(q, "u1"), job(q, "u2"), job(q, "u3")])
    await harness.broker.enqueue(
        [job(q, "a1", "a"), job(q, "a2", "a"), job(q, "a3", "a"), job(q, "b1", "b")]
    )

    assert await drain(harness.broker, q) == ["u1", "a1", "b1", "u2", "a2", "u3", "a3"]


async def test_a_queue_without_groups_stays_fifo(harness: BrokerHarness, job: MakeJob) -> None:
    q = new_queue()
    await harness.broker.enqueue([job(q, f"u{i}") for i in range(5)])

    assert await drain(harness.broker, q, count=2) == ["u0", "u1", "u2", "u3", "u4"]


async def test_priorities_come_before_and_after_the_turns(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    await harness.broker.enqueue(
        [
            job(q, "a1", "a"),
            job(q, "a2", "a"),
            job(q, "low", "a", priority=-1),
            job(q, "b1", "b"),
            job(q, "high", "b", priority=5),
            job(q, "top", priority=9),
        ]
    )

    assert await drain(harness.broker, q) == ["top", "high", "a1", "b1", "a2", "low"]


async def test_a_delayed_job_becomes_ready_in_its_group(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    await harness.broker.enqueue([job(q, "a1", "a")], delays=[DELAY])
    await harness.broker.enqueue([job(q, "u1"), job(q, "u2"), job(q, "b1", "b")])
    await harness.advance(PAST_DELAY)

    # Promoted, a joins the rotation after b; in the FIFO list a1 would come after u2.
    assert await drain(harness.broker, q) == ["u1", "b1", "a1", "u2"]


async def test_a_retry_later_goes_to_the_back_of_its_group(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    await harness.broker.enqueue([job(q, "a1", "a")])
    [held] = await harness.broker.reserve([q], count=1, lease=LONG, timeout=0)
    await harness.broker.settle([outcome(held, OutcomeKind.RETRY, error="x", delay=DELAY)])
    await harness.broker.enqueue(
        [job(q, "b1", "b"), job(q, "b2", "b"), job(q, "u1"), job(q, "a2", "a")]
    )
    await harness.advance(PAST_DELAY)

    assert await drain(harness.broker, q) == ["u1", "b1", "a2", "b2", "a1"]


async def test_a_released_job_is_next_in_its_group(harness: BrokerHarness, job: MakeJob) -> None:
    q = new_queue()
    await harness.broker.enqueue([job(q, "a1", "a"), job(q, "a2", "a"), job(q, "b1", "b")])
    [held] = await harness.broker.reserve([q], count=1, lease=LONG, timeout=0)
    assert names([held.job]) == ["a1"]

    await harness.broker.settle([outcome(held, OutcomeKind.RELEASE)])

    assert await drain(harness.broker, q) == ["b1", "a1", "a2"]


async def test_a_job_put_back_in_an_idle_group_takes_the_next_turn(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    await harness.broker.enqueue([job(q, "a1", "a")])
    [held] = await harness.broker.reserve([q], count=1, lease=LONG, timeout=0)
    await harness.broker.enqueue([job(q, "b1", "b"), job(q, "b2", "b")])

    await harness.broker.settle([outcome(held, OutcomeKind.RETRY, error="x")])

    assert await drain(harness.broker, q) == ["a1", "b1", "b2"]
    assert (await harness.broker.get(held.job.id)).attempts == 2  # type: ignore[union-attr]


async def test_a_requeued_dead_letter_returns_to_its_group(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    await harness.broker.enqueue([job(q, "a1", "a")])
    [held] = await harness.broker.reserve([q], count=1, lease=LONG, timeout=0)
    await harness.broker.settle([outcome(held, OutcomeKind.DEAD_LETTER, error="x")])
    await harness.broker.enqueue([job(q, "u1"), job(q, "u2"), job(q, "b1", "b")])

    assert await harness.broker.requeue_dead(q) == 1

    assert await drain(harness.broker, q) == ["u1", "b1", "a1", "u2"]


async def test_cancel_takes_a_job_out_and_its_group_out_of_the_turns(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    a1, a2 = job(q, "a1", "a"), job(q, "a2", "a")
    await harness.broker.enqueue([a1, job(q, "b1", "b"), a2, job(q, "u1")])
    assert await harness.broker.cancel(a1.id)
    assert await harness.broker.cancel(a2.id)
    await harness.broker.enqueue([job(q, "a3", "a")])

    # a left the rotation with its last job; back, it waits a round behind b.
    assert await drain(harness.broker, q) == ["u1", "b1", "a3"]
    assert await _status(harness.broker, a1.id) is JobStatus.CANCELLED


async def test_stats_count_grouped_jobs_and_purge_removes_them(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    await harness.broker.enqueue(
        [job(q, "a1", "a"), job(q, "a2", "a"), job(q, "b1", "b"), job(q, "u1")]
    )
    await harness.broker.enqueue([job(q, "s1", "a")], delays=[60.0])

    stats = (await harness.broker.stats([q]))[q]
    assert (stats.queued, stats.scheduled) == (4, 1)
    assert await harness.broker.purge(q) == 5
    assert (await harness.broker.stats([q]))[q].queued == 0
    assert await drain(harness.broker, q) == []

    await harness.broker.enqueue([job(q, "b2", "b"), job(q, "c1", "c"), job(q, "b3", "b")])
    assert await drain(harness.broker, q) == ["b2", "c1", "b3"]


async def test_a_job_of_a_group_can_be_read_back_with_it(
    harness: BrokerHarness, job: MakeJob
) -> None:
    q = new_queue()
    [stored] = await harness.broker.enqueue([job(q, "a1", "tenant 7|x:y")])

    got = await harness.broker.get(stored.id)
    assert got is not None
    assert got.group == "tenant 7|x:y"
    [held] = await harness.broker.reserve([q], count=1, lease=LONG, timeout=0)
    assert held.job.group == "tenant 7|x:y"
    assert await harness.broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]


@pytest.mark.parametrize(
    ("group", "error"),
    [("a\0b", "without NUL"), ("x" * (MAX_GROUP + 1), "1 to 200 characters"), ("", "1 to 200")],
)
async def test_a_bad_group_is_refused_and_nothing_is_stored(
    harness: BrokerHarness, job: MakeJob, group: str, error: str
) -> None:
    q = new_queue()
    good = job(q, "ok", "a")

    with pytest.raises(ValueError, match=error):
        await harness.broker.enqueue([good, job(q, "bad", group)])

    assert await harness.broker.get(good.id) is None


async def test_one_big_tenant_does_not_starve_ten_small_ones(
    harness: BrokerHarness, job: MakeJob
) -> None:
    """10,000 jobs of one tenant enqueued first, then 10 jobs of each of ten tenants: every small
    tenant's jobs are all reserved within the first 110 reservations (11 turns a round)."""
    q = new_queue()
    big = [job(q, "big", "big") for _ in range(10_000)]
    for i in range(0, len(big), 2_000):
        await harness.broker.enqueue(big[i : i + 2_000])
    await harness.broker.enqueue([job(q, f"t{t}", f"t{t}") for _ in range(10) for t in range(10)])

    first: list[Job] = []
    while len(first) < 110:
        first += [lease.job for lease in await harness.broker.reserve(
            [q], count=10, lease=LONG, timeout=0)]  # fmt: skip

    small = [j for j in first if j.group != "big"]
    assert len(small) == 100
    assert len(first) - len(small) == 10


async def _status(broker: Broker, job_id: str) -> JobStatus | None:
    got = await broker.get(job_id)
    return None if got is None else got.status
