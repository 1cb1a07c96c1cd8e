"""Waiting for a job's result: poll the broker, quickly at first, until the job has finished."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from taskit.errors import JobNotFoundError, ResultTimeoutError
from taskit.job import JobResult, result_of

if TYPE_CHECKING:
    from taskit.broker.base import Broker

__all__ = ["wait_for_result"]

#: The first pause between two reads; it doubles up to the caller's ``poll_interval``.
FIRST_POLL = 0.002


async def wait_for_result(
    broker: Broker, job_id: str, timeout: float | None, poll_interval: float
) -> JobResult:
    """The finished job's ``JobResult`` (see ``App.result``, which checks the arguments).
    Raises ``JobNotFoundError`` or ``ResultTimeoutError``."""
    delay = min(FIRST_POLL, poll_interval)
    with anyio.move_on_after(timeout) as scope:
        while True:
            job = await broker.get(job_id)
            if job is None:
                raise JobNotFoundError(job_id)
            if job.status.finished:
                return result_of(job)
            await anyio.sleep(delay)
            delay = min(delay * 2, poll_interval)
    assert scope.cancelled_caught
    raise ResultTimeoutError(f"job {job_id!r} did not finish within {timeout} s")
