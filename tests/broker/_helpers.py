"""Helpers shared by the broker conformance tests: jobs, queues, leases, settling."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from taskit.broker.base import Broker
from taskit.job import Job, JobStatus, Lease, Outcome, OutcomeKind, encode_arguments

#: A lease that never runs out during a test.
LONG = 30.0


def new_queue() -> str:
    """A queue name no other test uses."""
    return f"q-{uuid.uuid4().hex[:12]}"


def make_job(
    queue: str,
    *args: Any,
    job_id: str | None = None,
    priority: int = 0,
    scheduled_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Job:
    """A job of task ``tests.noop`` on ``queue``; ``args``/``kwargs`` are its arguments."""
    return Job(
        id=job_id or uuid.uuid4().hex,
        task="tests.noop",
        queue=queue,
        payload=encode_arguments(args, kwargs),
        created_at=datetime.now(UTC),
        priority=priority,
        scheduled_at=scheduled_at,
        metadata=metadata or {},
    )


def outcome(lease: Lease, kind: OutcomeKind, **fields: Any) -> Outcome:
    """The outcome ``kind`` for ``lease``, with ``fields`` (error, delay, result...)."""
    return Outcome(job_id=lease.job.id, token=lease.token, kind=kind, **fields)


async def running(
    broker: Broker, queue: str, *, lease: float = LONG, job_id: str | None = None
) -> Lease:
    """Enqueue one job on ``queue`` (with ``job_id`` when given) and reserve it."""
    await broker.enqueue([make_job(queue, job_id=job_id)])
    [held] = await broker.reserve([queue], count=1, lease=lease, timeout=0)
    return held


async def status_of(broker: Broker, job_id: str) -> JobStatus | None:
    """The job's status, or None when the broker has no such job."""
    job = await broker.get(job_id)
    return None if job is None else job.status


async def reserve_all(broker: Broker, queue: str) -> list[Lease]:
    """Everything reservable on ``queue`` right now (up to ten)."""
    return await broker.reserve([queue], count=10, lease=LONG, timeout=0)
