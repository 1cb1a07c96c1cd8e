"""Waiting for a job's result: poll the broker, quickly at first, until the job has finished."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from taskit.errors import JobNotFoundError, ResultTimeoutError
from taskit.job import JobResult, result_of

if TYPE_CHECKING:
    from taskit.broker.base import Broker

__all__ = ["check_wait", "wait_for_result"]

#: The first pause between two reads; it doubles up to the caller's ``poll_interval``.
FIRST_POLL = 0.002


async def wait_for_result(
    broker: Broker, job_id: str, timeout: float | None, poll_interval: float
) -> JobResult:
    """The finished job's ``JobResult`` (``App.result`` checks the arguments: ``check_wait``).
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


def check_wait(timeout: float | None, poll_interval: float) -> None:
    """``ValueError`` naming ``timeout`` (``None``, or a finite number of seconds >= 0) or
    ``poll_interval`` (a finite number of seconds > 0) if it is not one."""
    if timeout is not None:
        _check_seconds(timeout, "timeout", positive=False)
    _check_seconds(poll_interval, "poll_interval", positive=True)


def _check_seconds(value: float, what: str, *, positive: bool) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (value > 0 if positive else value >= 0) or value == float("inf"):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what} must be a finite number of seconds {bound}, got {value!r}")
