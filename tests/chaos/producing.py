"""Enqueuing from the test process: every id returned by an enqueue is *acknowledged*."""

from __future__ import annotations

from collections.abc import Sequence

from taskit import App, Job


def work_jobs(
    app: App, keys: Sequence[str], seconds: Sequence[float] | float, task: str = "chaos.work",
    max_retries: int | None = None,
) -> list[Job]:  # fmt: skip
    """Prepared ``task`` jobs (``chaos.work`` by default) whose ids are their keys (and whose
    ``max_retries`` is that, if given)."""
    remote = app.remote(task)
    secs = [seconds] * len(keys) if isinstance(seconds, float | int) else list(seconds)
    return [
        (
            remote.options(job_id=key)
            if max_retries is None
            else remote.options(job_id=key, max_retries=max_retries)
        ).prepare(key, float(s))
        for key, s in zip(keys, secs, strict=True)
    ]


async def enqueue_work(
    app: App, keys: Sequence[str], seconds: Sequence[float] | float, *, batch: int = 200,
    task: str = "chaos.work", max_retries: int | None = None,
) -> list[str]:  # fmt: skip
    """Enqueue ``task`` jobs in batches; the acknowledged ids."""
    jobs = work_jobs(app, keys, seconds, task, max_retries)
    acked: list[str] = []
    for start in range(0, len(jobs), batch):
        stored = await app.enqueue_many(jobs[start : start + batch])
        acked += [j.id for j in stored]
    return acked
