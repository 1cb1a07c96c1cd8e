"""Enqueuing from the test process: every id returned by an enqueue is *acknowledged*."""

from __future__ import annotations

from collections.abc import Sequence

from taskit import App, Job


def work_jobs(app: App, keys: Sequence[str], seconds: Sequence[float] | float) -> list[Job]:
    """Prepared ``chaos.work`` jobs whose ids are their keys."""
    task = app.remote("chaos.work")
    secs = [seconds] * len(keys) if isinstance(seconds, float | int) else list(seconds)
    return [
        task.options(job_id=key).prepare(key, float(s)) for key, s in zip(keys, secs, strict=True)
    ]


async def enqueue_work(
    app: App, keys: Sequence[str], seconds: Sequence[float] | float, *, batch: int = 200
) -> list[str]:
    """Enqueue ``chaos.work`` jobs in batches; the acknowledged ids."""
    jobs = work_jobs(app, keys, seconds)
    acked: list[str] = []
    for start in range(0, len(jobs), batch):
        stored = await app.enqueue_many(jobs[start : start + batch])
        acked += [j.id for j in stored]
    return acked
