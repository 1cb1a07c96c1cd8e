"""``depends_on``: a job that waits for jobs already enqueued (``task.options(depends_on=...)``).

The job joins the workflow of its parents: the one workflow any of them belongs to (read from
the broker, since a job may have joined one after the caller got it), or a new one when none
does (the broker then adopts the parents into it). It is stored DEFERRED until every parent has
ended (``taskit.dependencies``), is fed nothing, and fails or is cancelled with a parent that
fails or is cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from taskit.broker.base import Broker
from taskit.dependencies import After
from taskit.job import Job, new_job_id

__all__ = ["waiting_for"]


async def waiting_for(broker: Broker, job: Job, parents: Sequence[Job | str]) -> Job:
    """``job`` made to wait for ``parents`` (jobs or ids; a repeated one counts once).
    ``ValueError`` naming them when parents belong to two different workflows; an unknown
    parent is refused by the broker's enqueue (``ValueError`` naming it), nothing stored."""
    ids = tuple(dict.fromkeys(p.id if isinstance(p, Job) else p for p in parents))
    if not ids:
        return job
    owners: dict[str, str] = {}  # workflow id -> the first parent found in it
    for parent in ids:
        found = await broker.get(parent)
        if found is not None and found.workflow is not None:
            owners.setdefault(found.workflow, parent)
    if len(owners) > 1:
        named = ", ".join(f"job {p!r} is in workflow {w!r}" for w, p in owners.items())
        raise ValueError(
            f"job {job.id!r} of task {job.task!r}: depends_on names jobs of different "
            f"workflows ({named}); a job can wait only within one workflow"
        )
    workflow = next(iter(owners), None) or new_job_id()
    return msgspec.structs.replace(job, workflow=workflow, after=After(ids))
