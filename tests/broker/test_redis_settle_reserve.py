"""The Redis broker's ``settle_and_reserve``: the settle and the reserve scripts written back to
back, one round trip. What happens when Redis answers one of them with an error: a settle that
did not run is sent again the usual way, a reserve that did not run takes nothing, a settle that
failed hands back what the reserve took. On a Redis server of the test's own (its script cache
is flushed); the contract itself is tests/broker/test_conformance_settle_reserve.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import anyio
import pytest

from taskit import App, Settings
from taskit.broker.redis.scripts import SCRIPTS
from taskit.errors import BrokerError
from taskit.job import Job, JobStatus, Lease, Outcome, OutcomeKind, encode_arguments
from tests.broker._redis_kinds import OWN, RedisHarness, open_redis_harness

pytestmark = pytest.mark.anyio

LONG = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def own(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    async with open_redis_harness(OWN, request) as harness:
        yield harness


def make_job(queue: str, n: int) -> Job:
    return Job(id=uuid.uuid4().hex, task="tests.noop", queue=queue,
               payload=encode_arguments((n,), {}), created_at=datetime.now(UTC))  # fmt: skip


def complete(lease: Lease) -> Outcome:
    return Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE)


async def two_queued(harness: RedisHarness) -> tuple[str, Job, Job, Lease]:
    """A queue of two jobs, the first leased."""
    queue = f"q-{uuid.uuid4().hex[:8]}"
    first, second = make_job(queue, 1), make_job(queue, 2)
    await harness.broker.enqueue([first, second])
    (held,) = await harness.broker.reserve([queue], count=1, lease=LONG, timeout=0)
    assert held.job.id == first.id
    return queue, first, second, held


async def status(harness: RedisHarness, job: Job) -> tuple[JobStatus, int]:
    stored = await harness.broker.get(job.id)
    assert stored is not None
    return stored.status, stored.attempts


async def test_both_scripts_lost_the_settle_is_sent_again_and_nothing_is_taken(
    own: RedisHarness,
) -> None:
    queue, first, second, held = await two_queued(own)
    await own.client.script_flush()

    both = await own.broker.settle_and_reserve([complete(held)], [queue], count=1, lease=LONG)

    assert both == ([True], [])  # the reserve did not run (NOSCRIPT): the fetcher's turn
    assert await status(own, first) == (JobStatus.COMPLETED, 1)
    assert await status(own, second) == (JobStatus.PENDING, 0)


async def test_only_the_settle_script_lost_the_lease_taken_is_kept_and_the_settle_applied(
    own: RedisHarness,
) -> None:
    """The reserve ran (its script was loaded), the settle did not: sent again, it applies;
    the lease the reserve took is the caller's."""
    queue, first, second, held = await two_queued(own)
    await own.client.script_flush()
    await own.client.script_load(SCRIPTS["reserve"].source)

    applied, leases = await own.broker.settle_and_reserve(
        [complete(held)], [queue], count=1, lease=LONG
    ) or ([], [])

    assert applied == [True]
    assert [lease.job.id for lease in leases] == [second.id]
    assert await status(own, first) == (JobStatus.COMPLETED, 1)
    assert await status(own, second) == (JobStatus.RUNNING, 1)
    assert await own.broker.settle([complete(leases[0])]) == [True]


async def test_a_settle_that_fails_hands_back_what_the_reserve_took(own: RedisHarness) -> None:
    """The settled job's queue has a damaged key (its FIFO list holds a string): the settle's
    layout check refuses to run; the reserve behind it, on another queue, takes that queue's
    job, which goes back unrun, its attempt refunded, before the error is raised."""
    queue, first, _, held = await two_queued(own)
    other = f"q-{uuid.uuid4().hex[:8]}"
    waiting = make_job(other, 3)
    await own.broker.enqueue([waiting])
    await own.client.set(own.broker.keys.queue(queue, "fifo"), "not a list")

    with pytest.raises(BrokerError, match="fifo"):
        await own.broker.settle_and_reserve([complete(held)], [other], count=1, lease=LONG)

    assert await status(own, first) == (JobStatus.RUNNING, 1)  # not settled
    assert await status(own, waiting) == (JobStatus.PENDING, 0)  # handed back


async def test_outcomes_of_no_lease_of_this_broker_are_stale_and_the_next_still_taken(
    own: RedisHarness,
) -> None:
    queue, first, second, _ = await two_queued(own)
    foreign = Outcome(job_id=first.id, token="not-ours", kind=OutcomeKind.COMPLETE)

    both = await own.broker.settle_and_reserve([foreign], [queue], count=1, lease=LONG)

    assert both is not None
    assert both[0] == [False]
    assert [lease.job.id for lease in both[1]] == [second.id]
    assert await status(own, first) == (JobStatus.RUNNING, 1)


async def test_a_worker_of_concurrency_1_on_redis_drains_through_the_step(
    own: RedisHarness,
) -> None:
    app = App(own.broker, settings=Settings(backoff=0.0))
    ran: list[int] = []
    calls: list[int] = []
    step = own.broker.settle_and_reserve

    async def counted(
        outcomes: Sequence[Outcome], queues: Sequence[str], *, count: int, lease: float
    ) -> tuple[list[bool], list[Lease]] | None:
        calls.append(1)
        return await step(outcomes, queues, count=count, lease=lease)

    own.broker.settle_and_reserve = counted  # type: ignore[method-assign]

    @app.task
    async def note(n: int) -> None:
        ran.append(n)

    jobs = [await note.enqueue(n) for n in range(5)]
    with anyio.fail_after(10):
        stats = await app.worker(concurrency=1).run(burst=True)

    assert ran == [0, 1, 2, 3, 4]
    assert stats.completed == 5
    assert len(calls) == 5  # one step a job: each settle took the next (the last found none)
    for job in jobs:
        stored = await app.get_job(job.id)
        assert stored is not None
        assert (stored.status, stored.attempts) == (JobStatus.COMPLETED, 1)
