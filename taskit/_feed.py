"""What a released workflow node is fed: its parents' results as its first argument.

A job whose ``After.feed`` is ONE or ALL (a chain's step, a chord's callback) reads its
parents' results from its workflow's record (``Broker.workflow_results``, one round trip) when a
worker starts it, before its arguments are converted: ONE gives the one parent's value, ALL the
list of values in ``After.jobs`` order; under ``if_failed`` CONTINUE each is the parent's
``JobResult`` instead (failures included). The value is then converted like any argument, so a
result that does not fit the parameter's annotation fails the job as an unfitting argument does.
"""

from __future__ import annotations

from typing import Any

from taskit.broker.base import Broker
from taskit.dependencies import Feed, IfFailed
from taskit.errors import SerializationError
from taskit.job import Job

__all__ = ["fed_value", "is_fed"]


def is_fed(job: Job) -> bool:
    """True for a job that takes its parents' results as its first argument."""
    return job.after is not None and job.after.feed is not Feed.NONE


async def fed_value(broker: Broker | None, job: Job) -> Any:
    """The first argument ``job`` is fed (see above). ``SerializationError`` naming the parents
    whose results its workflow no longer has (its record expired), or when there is no broker
    to read them from: retrying cannot help. A broker error is raised as it is (a worker
    retries the job)."""
    after, workflow = job.after, job.workflow
    assert after is not None
    if broker is None or workflow is None:
        raise SerializationError(
            f"job {job.id!r} is fed its parents' results, but this executor has no broker to "
            "read them from (Executor(..., broker=...))"
        )
    results = await broker.workflow_results(workflow, after.jobs)
    missing = [parent for parent, result in zip(after.jobs, results, strict=True) if result is None]
    if missing:
        raise SerializationError(
            f"job {job.id!r} waits for the results of {', '.join(map(repr, missing))} in "
            f"workflow {workflow!r}, which has none for them (ended? expired?)"
        )
    items: list[Any] = list(results)
    if after.if_failed is IfFailed.FAIL:
        items = [result.value for result in results if result is not None]
    return items[0] if after.feed is Feed.ONE else items
