"""Where a sharded broker (``taskit.broker.sharded``) stores each job of a batch it enqueues:
the checks every shard would make, done for the whole batch first; each job's shard
(``taskit.broker.placement``, then its workflow's); and the batch cut into one part per shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from taskit.broker._fanout import first
from taskit.broker.base import Broker
from taskit.broker.placement import HOME, place, shard_of
from taskit.dependencies import check_after
from taskit.fairness import check_groups
from taskit.job import Job, stored_form

__all__ = ["batch_targets", "by_shard", "check_batch", "pick"]


async def batch_targets(shards: Sequence[Broker], jobs: Sequence[Job]) -> list[int]:
    """Each job's shard: ``place``, then each workflow's jobs, and the jobs of no workflow
    earlier in the batch that they wait for (they join it), moved to their workflow's."""
    targets = [place(job, len(shards)) for job in jobs]
    flows = dict.fromkeys(job.workflow for job in jobs if job.workflow is not None)
    if not flows:
        return targets
    index = {job.id: i for i, job in enumerate(jobs)}
    for workflow in flows:
        members = [i for i, job in enumerate(jobs) if job.workflow == workflow]
        parents = {p for i in members for p in _parents(jobs[i])}
        joining = [index[p] for p in parents if p in index and jobs[index[p]].workflow is None]
        k = await _workflow_shard(shards, workflow, {p for p in parents if p not in index})
        for i in [*members, *joining]:
            if k != HOME and (jobs[i].limits or jobs[i].dedup is not None):
                _refuse_away_from_home(jobs[i], workflow, k, len(shards))
            targets[i] = k
    return targets


async def _workflow_shard(shards: Sequence[Broker], workflow: str, parents: set[str]) -> int:
    """The shard holding ``workflow``'s record; else the one shard holding the stored jobs
    it waits for (they join it); else the home shard. ``ValueError`` when the stored jobs
    it waits for are not all in that one shard."""
    count = len(shards)
    found = await first(count, HOME, lambda k: shards[k].workflow(workflow))
    where: dict[int, str] = {}
    for parent in sorted(parents):
        start = shard_of(parent, count) if found is None else found[0]
        located = await first(count, start, partial(_get, shards, parent))
        if located is not None:
            where.setdefault(located[0], parent)
    if found is not None:
        away = {k: p for k, p in where.items() if k != found[0]}
        if away:
            named = ", ".join(f"job {p!r} on shard {k}" for k, p in sorted(away.items()))
            raise ValueError(
                f"workflow {workflow!r} lives on shard {found[0]} of {count}, but a "
                f"job of it would wait for jobs of other shards ({named}): a job can wait "
                "only for jobs of its workflow's shard. Enqueue the jobs it waits for as "
                "one workflow (taskit.canvas), or give them a workflow when they are "
                "enqueued"
            )
        return found[0]
    if len(where) > 1:
        named = ", ".join(f"job {p!r} on shard {k}" for k, p in sorted(where.items()))
        raise ValueError(
            f"workflow {workflow!r} would wait for jobs of different shards ({named}): "
            f"with {count} shards, a job can wait only for jobs of one shard. Enqueue "
            "the jobs it waits for as one workflow (taskit.canvas), or give them a "
            "workflow when they are enqueued"
        )
    return next(iter(where), HOME)


async def _get(shards: Sequence[Broker], job_id: str, k: int) -> Job | None:
    return await shards[k].get(job_id)


def check_batch(jobs: Sequence[Job], delays: Sequence[float] | None) -> None:
    """What every shard would refuse before storing anything, checked for the whole batch, so
    one bad job stores none of the others on any shard."""
    if delays is not None and len(delays) != len(jobs):
        raise ValueError(f"got {len(delays)} delays for {len(jobs)} jobs")
    check_groups(jobs)
    for job in jobs:
        if job.workflow is not None or job.after is not None:
            check_after(job.id, job.workflow, job.after)
        stored_form(job)


def _refuse_away_from_home(job: Job, workflow: str, k: int, count: int) -> None:
    """The ``ValueError`` for a job with limits or a dedup window that would join
    ``workflow`` on shard ``k``, not the home shard, where limits and dedup windows are kept."""
    kept = [f"limits {list(job.limits)}"] if job.limits else []
    if job.dedup is not None:
        kept.append(f"a {job.dedup.mode} window")
    raise ValueError(
        f"job {job.id!r} carries {' and '.join(kept)}, but its workflow {workflow!r} lives on "
        f"shard {k} of {count} (it adopted jobs stored there): limits are counted on the home "
        "shard, and dedup windows kept there, so such a job can join only a workflow of the "
        "home shard"
    )


def _parents(job: Job) -> tuple[str, ...]:
    return () if job.after is None else job.after.jobs


def by_shard(targets: list[int]) -> dict[int, list[int]]:
    """The indexes of each shard's jobs, in their order in the batch."""
    parts: dict[int, list[int]] = {}
    for i, k in enumerate(targets):
        parts.setdefault(k, []).append(i)
    return parts


def pick(delays: Sequence[float] | None, indexes: list[int]) -> list[float] | None:
    return None if delays is None else [delays[i] for i in indexes]
