"""Dependencies between jobs: what a job waits for, and what it receives from it.

A job may name the jobs it waits for (``Job.after``, an ``After``): it is stored DEFERRED, in no
queue, and the broker releases it (PENDING, or SCHEDULED until its due time) in the same atomic
step as the end of the last of them. What it then receives from them is its ``feed``; what
happens to it when one of them fails for good, or is cancelled, its ``if_failed``. This is the
one mechanism under chains, groups, chords, maps and ``depends_on`` (``taskit.canvas``); the
broker contract (``taskit.broker.base``) says how each broker keeps it.
"""

from __future__ import annotations

import enum

import msgspec

__all__ = ["MAX_PARENTS", "MAX_WORKFLOW_ID", "After", "Feed", "IfFailed", "check_after"]

#: The most jobs one job may wait for (a chord's callback waits for every member).
MAX_PARENTS = 100_000
#: The longest workflow id.
MAX_WORKFLOW_ID = 200


class Feed(enum.StrEnum):
    """What a released job receives from the jobs it waited for, as its first argument."""

    NONE = "none"  #: nothing: they only had to end first (``depends_on``)
    ONE = "one"  #: the result of its one parent (a chain's next step)
    ALL = "all"  #: the list of its parents' results, in ``After.jobs`` order (a chord callback)


class IfFailed(enum.StrEnum):
    """What happens to a waiting job when a job it waits for ends without success."""

    #: It ends without running, with a reason naming the parent: FAILED (``error_type``
    #: "DependencyFailed") when the parent failed or was dead-lettered, CANCELLED
    #: ("DependencyCancelled") when it was cancelled; and so on down to its own dependents.
    FAIL = "fail"
    #: It runs anyway, once every parent has ended; it is fed ``JobResult`` s (failures
    #: included) in place of plain values.
    CONTINUE = "continue"


class After(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """The jobs a job waits for (``Job.after``): their ids in order, what it is fed from them,
    and what a failure among them does to it."""

    jobs: tuple[str, ...]
    feed: Feed = Feed.NONE
    if_failed: IfFailed = IfFailed.FAIL


def check_after(job_id: str, workflow: str | None, after: After | None) -> None:
    """``ValueError`` / ``TypeError`` naming the problem if a job's workflow id or ``after`` is
    not valid on its own (a broker checks the rest: the parents exist, belong, come first)."""
    if workflow is not None:
        if not isinstance(workflow, str):
            raise TypeError(f"job {job_id!r}: workflow id must be text, got {workflow!r}")
        if not 0 < len(workflow) <= MAX_WORKFLOW_ID or "\0" in workflow:
            raise ValueError(
                f"job {job_id!r}: workflow id must be 1 to {MAX_WORKFLOW_ID} characters "
                f"without NUL, got {workflow!r}"
            )
    if after is None:
        return
    if not isinstance(after, After):
        raise TypeError(f"job {job_id!r}: after must be an After, got {after!r}")
    if workflow is None:
        raise ValueError(f"job {job_id!r}: a job that waits for others needs a workflow id")
    if not after.jobs:
        raise ValueError(f"job {job_id!r}: after names no job to wait for")
    if len(after.jobs) > MAX_PARENTS:
        raise ValueError(f"job {job_id!r}: waits for {len(after.jobs)} jobs, over {MAX_PARENTS}")
    if len(set(after.jobs)) != len(after.jobs):
        raise ValueError(f"job {job_id!r}: after names a job twice")
    for parent in after.jobs:
        if not isinstance(parent, str) or not parent:
            raise TypeError(f"job {job_id!r}: after names {parent!r}, not a job id")
        if parent == job_id:
            raise ValueError(f"job {job_id!r} cannot wait for itself")
    if after.feed is Feed.ONE and len(after.jobs) != 1:
        raise ValueError(f"job {job_id!r}: feed 'one' needs exactly one parent")
