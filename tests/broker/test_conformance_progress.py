"""Broker conformance: ``set_progress``, fenced by the lease token, stored with the job for as
long as its record, and shown by ``get``. Runs unchanged against every broker kind."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskit.job import JobStatus, OutcomeKind, Progress, ProgressUpdate
from tests.broker._helpers import LONG, make_job, new_queue, outcome, running
from tests.broker.conftest import BrokerHarness

pytestmark = pytest.mark.anyio

LEASE = 0.3
PAST_LEASE = 0.4
AT = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def progress(fraction: float, message: str = "", **data: object) -> Progress:
    return Progress(updated_at=AT, fraction=fraction, message=message or None, data=dict(data))


async def test_progress_of_a_running_job_is_shown_by_get(harness: BrokerHarness) -> None:
    broker = harness.broker
    held = await running(broker, new_queue())
    assert (await broker.get(held.job.id)).progress is None  # type: ignore[union-attr]

    first = progress(0.25, "a quarter", rows=10)
    latest = progress(0.5, "half", rows=20)
    assert await broker.set_progress([ProgressUpdate(held.job.id, held.token, first)]) == [True]
    assert await broker.set_progress([ProgressUpdate(held.job.id, held.token, latest)]) == [True]

    got = await broker.get(held.job.id)
    assert got is not None
    assert got.progress == latest
    assert got.status is JobStatus.RUNNING


async def test_one_call_stores_many_jobs_and_refuses_stale_tokens(harness: BrokerHarness) -> None:
    broker = harness.broker
    queue = new_queue()
    a, b = await running(broker, queue), await running(broker, queue)
    unknown = make_job(queue)
    updates = [
        ProgressUpdate(a.job.id, a.token, progress(0.1)),
        ProgressUpdate(b.job.id, "not-the-token", progress(0.2)),
        ProgressUpdate(unknown.id, a.token, progress(0.3)),
        ProgressUpdate(b.job.id, b.token, progress(0.4)),
    ]

    assert await broker.set_progress(updates) == [True, False, False, True]
    assert (await broker.get(a.job.id)).progress == progress(0.1)  # type: ignore[union-attr]
    assert (await broker.get(b.job.id)).progress == progress(0.4)  # type: ignore[union-attr]
    assert await broker.get(unknown.id) is None
    assert await broker.set_progress([]) == []


async def test_a_worker_that_lost_its_lease_cannot_overwrite_progress(
    harness: BrokerHarness,
) -> None:
    broker = harness.broker
    queue = new_queue()
    stale = await running(broker, queue, lease=LEASE)
    await harness.advance(PAST_LEASE)
    [taken] = await broker.reclaim([queue], lease=LONG)  # another worker holds it now
    assert await broker.set_progress([ProgressUpdate(taken.job.id, taken.token, progress(0.9))])

    answer = await broker.set_progress([ProgressUpdate(stale.job.id, stale.token, progress(0.1))])

    assert answer == [False]
    assert (await broker.get(taken.job.id)).progress == progress(0.9)  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", [OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.RETRY,
                                  OutcomeKind.DEAD_LETTER, OutcomeKind.RELEASE])  # fmt: skip
async def test_progress_outlives_the_attempt_and_a_settled_lease_refuses_more(
    harness: BrokerHarness, kind: OutcomeKind
) -> None:
    broker = harness.broker
    held = await running(broker, new_queue())
    await broker.set_progress([ProgressUpdate(held.job.id, held.token, progress(1.0, "done"))])
    assert await broker.settle([outcome(held, kind, error=None if kind == "complete" else "e")])

    late = ProgressUpdate(held.job.id, held.token, progress(0.0))
    assert await broker.set_progress([late]) == [False]
    got = await broker.get(held.job.id)
    assert got is not None
    assert got.progress == progress(1.0, "done")


async def test_a_cancelled_running_job_keeps_its_progress(harness: BrokerHarness) -> None:
    broker = harness.broker
    held = await running(broker, new_queue())
    await broker.set_progress([ProgressUpdate(held.job.id, held.token, progress(0.3))])
    assert await broker.cancel(held.job.id)
    assert await broker.settle([outcome(held, OutcomeKind.CANCEL)]) == [True]

    got = await broker.get(held.job.id)
    assert got is not None
    assert (got.status, got.progress) == (JobStatus.CANCELLED, progress(0.3))


async def test_progress_goes_with_the_record(harness: BrokerHarness) -> None:
    """Purged dead letters and re-enqueued ids start without the old progress."""
    broker = harness.broker
    queue = new_queue()
    held = await running(broker, queue)
    await broker.set_progress([ProgressUpdate(held.job.id, held.token, progress(0.7))])
    await broker.settle([outcome(held, OutcomeKind.DEAD_LETTER, error="boom")])
    assert await broker.purge_dead(queue) == 1
    assert await broker.get(held.job.id) is None

    again = make_job(queue, job_id=held.job.id)
    await broker.enqueue([again])
    got = await broker.get(held.job.id)
    assert got is not None
    assert (got.status, got.progress) == (JobStatus.PENDING, None)


async def test_a_job_kept_for_no_time_takes_its_progress_with_it(harness: BrokerHarness) -> None:
    """``result_ttl=0``: nothing of the finished job is kept, its progress included."""
    broker = harness.broker
    queue = new_queue()
    held = await running(broker, queue)
    await broker.set_progress([ProgressUpdate(held.job.id, held.token, progress(0.7))])

    assert await broker.settle([outcome(held, OutcomeKind.COMPLETE, result_ttl=0.0)]) == [True]

    assert await broker.get(held.job.id) is None
    await broker.enqueue([make_job(queue, job_id=held.job.id)])
    got = await broker.get(held.job.id)
    assert got is not None
    assert (got.status, got.progress) == (JobStatus.PENDING, None)


async def test_a_dead_letter_replaced_by_an_enqueue_leaves_no_progress(
    harness: BrokerHarness,
) -> None:
    broker = harness.broker
    queue = new_queue()
    held = await running(broker, queue)
    await broker.set_progress([ProgressUpdate(held.job.id, held.token, progress(0.7))])
    await broker.settle([outcome(held, OutcomeKind.DEAD_LETTER, error="boom")])

    await broker.enqueue([make_job(queue, job_id=held.job.id)])

    got = await broker.get(held.job.id)
    assert got is not None
    assert (got.status, got.progress) == (JobStatus.PENDING, None)


async def test_a_purged_waiting_job_leaves_no_progress(harness: BrokerHarness) -> None:
    broker = harness.broker
    queue = new_queue()
    held = await running(broker, queue)
    await broker.set_progress([ProgressUpdate(held.job.id, held.token, progress(0.7))])
    await broker.settle([outcome(held, OutcomeKind.RETRY, error="again", delay=60)])
    assert (await broker.get(held.job.id)).progress == progress(0.7)  # type: ignore[union-attr]
    assert await broker.purge(queue) == 1

    await broker.enqueue([make_job(queue, job_id=held.job.id)])

    got = await broker.get(held.job.id)
    assert got is not None
    assert got.progress is None
