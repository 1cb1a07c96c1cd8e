"""Enqueuing from the test process: every id returned by an enqueue is *acknowledged*."""

from __future__ import annotations

from collections.abc import Sequence

from taskit import App, Job


def work_jobs(
    app: App, keys: Sequence[str], seconds: Sequence[float] | float, task: str = "chaos.work"
) -> list[Job]:
    """Prepared ``task`` jobs (``chaos.work`` by default) whose ids are their keys."""
    remote = app.remote(task)
    secs = [seconds] * len(keys) if isinstance(seconds, float | int) else list(seconds)
    return [
        remote.options(job_id=key).prepare(key, float(s)) for key, s in zip(keys, secs, strict=True)
    ]


async def enqueue_work(
    app: App, keys: Sequence[str], seconds: Sequence[float] | float, *, batch: int = 200,
    task: str = "chaos.work",
) -> list[str]:  # fmt: skip
    """Enqueue ``task`` jobs in batches; the acknowledged ids."""
    jobs = work_jobs(app, keys, seconds, task)
    acked: list[str] = []
    for start in range(0, len(jobs), batch):
        stored = await app.enqueue_many(jobs[start : start + batch])
        acked += [j.id for j in stored]
    return acked
