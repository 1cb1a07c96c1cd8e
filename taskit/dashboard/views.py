"""Shaping broker data for the pages, the JSON API and the live stream: the overview (counts,
chart, run-time quantiles, workers, running jobs), the walk of a listing across queues, and
small formatters. Each function does O(page) broker work: never a read of a whole state."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from taskit.broker.base import Broker
from taskit.broker.browse import RUN_TIME_BOUNDS, Listing, quantile
from taskit.job import Job
from taskit.presence import WorkerInfo, live_workers

__all__ = [
    "CHART_MINUTES",
    "MAX_CALLS",
    "ago",
    "decode_cursor",
    "encode_cursor",
    "overview",
    "running_jobs",
    "seconds",
    "walk",
    "when",
]

#: Minutes the overview's chart (and its p50/p99) covers.
CHART_MINUTES = 60
#: Most ``list_jobs`` calls one page of a cross-queue walk makes (a filtered walk over many
#: queues stops there with a cursor, as a filtered ``list_jobs`` stops at its scan budget).
MAX_CALLS = 8
#: Most running jobs the overview and the live stream show.
MAX_RUNNING = 100


def encode_cursor(queue: str, inner: str | None) -> str:
    """The cursor of a cross-queue walk: the queue it stands in and the broker's cursor there
    (``None``: that queue's start), as URL-safe text."""
    raw = json.dumps([queue, inner], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str | None]:
    """``encode_cursor``'s pair back; ``ValueError`` naming the cursor when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        queue, inner = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError(f"bad cursor {cursor!r}: use the next-page link") from None
    if not isinstance(queue, str) or not (inner is None or isinstance(inner, str)):
        raise ValueError(f"bad cursor {cursor!r}: use the next-page link")
    return queue, inner


async def walk(
    broker: Broker,
    queues: Sequence[str],
    listing: Listing,
    *,
    cursor: str | None = None,
    limit: int = 50,
    task: str | None = None,
    text: str | None = None,
) -> tuple[list[Job], str | None]:
    """One page of ``listing`` over ``queues`` taken in name order, each walked to its end before
    the next: up to ``limit`` jobs, and the cursor of the next page (``None``: the walk is over).
    At most ``MAX_CALLS`` broker calls. ``ValueError`` for a bad cursor (a queue that is gone
    meanwhile is skipped: the walk goes on at the next name)."""
    names = sorted(set(queues))
    index, inner = 0, None
    if cursor is not None:
        queue, inner = decode_cursor(cursor)
        index = bisect.bisect_left(names, queue)
        if index < len(names) and names[index] != queue:
            inner = None
    jobs: list[Job] = []
    for _ in range(MAX_CALLS):
        if index >= len(names) or len(jobs) >= limit:
            break
        page = await broker.list_jobs(
            names[index], listing, cursor=inner, limit=limit - len(jobs), task=task, text=text
        )
        jobs.extend(page.jobs)
        inner = page.cursor
        if inner is None:
            index += 1
    if index >= len(names):
        return jobs, None
    return jobs, encode_cursor(names[index], inner)


def when(moment: datetime | float | None) -> str:
    """A time as the pages show it (UTC, to the second); "" for none."""
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(moment: datetime | None, now: float | None = None) -> str:
    """How long ago ``moment`` was ("12 s", "3 min", "2 h", "4 d"); "" for none."""
    if moment is None:
        return ""
    left = max(0.0, (time.time() if now is None else now) - moment.timestamp())
    for size, unit in ((86_400, "d"), (3600, "h"), (60, "min")):
        if left >= size:
            return f"{int(left // size)} {unit}"
    return f"{int(left)} s"


def seconds(value: float | None) -> str:
    """A run time: "850 µs", "12 ms", "1.5 s", "3.0 min"; "-" for none."""
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


async def running_jobs(broker: Broker, queues: Sequence[str]) -> list[dict[str, Any]]:
    """The running jobs (at most ``MAX_RUNNING``) with their progress, for the live views."""
    jobs, _ = await walk(broker, queues, Listing.RUNNING, limit=MAX_RUNNING)
    return [progress_of(job) for job in jobs]


def progress_of(job: Job) -> dict[str, Any]:
    """One running job as the progress view and the live stream show it."""
    progress = job.progress
    fraction = None if progress is None else progress.fraction
    return {
        "id": job.id,
        "task": job.task,
        "queue": job.queue,
        "started_at": when(job.started_at),
        "percent": None if fraction is None else round(fraction * 100),
        "message": None if progress is None else progress.message,
    }


async def overview(broker: Broker, *, with_running: bool = True) -> dict[str, Any]:
    """Everything the overview shows, as JSON-ready data: ``stats`` (``data-stat`` values),
    ``chart`` (per minute: completed, failed), ``queues``, ``workers`` and ``running``."""
    now = time.time()
    stats = await broker.stats()
    first = (int(now) // 60 - (CHART_MINUTES - 1)) * 60
    counts = await broker.counts(first)
    workers = await live_workers(broker)
    done = {m: [0, 0] for m in range(first, first + CHART_MINUTES * 60, 60)}
    runs = [0] * (len(RUN_TIME_BOUNDS) + 1)
    for c in counts:
        slot = done.setdefault(c.minute, [0, 0])
        slot[0] += c.completed
        slot[1] += c.failed + c.dead
        runs = [a + b for a, b in zip(runs, c.runs, strict=False)]
    total = {
        key: sum(getattr(s, key) for s in stats.values())
        for key in ("queued", "running", "scheduled", "dead", "completed", "failed")
    }
    return {
        "stats": {
            **{k: str(v) for k, v in total.items()},
            "workers": str(len(workers)),
            "p50": seconds(quantile(runs, 0.5)),
            "p99": seconds(quantile(runs, 0.99)),
        },
        "chart": [
            {"minute": m, "completed": v[0], "failed": v[1]} for m, v in sorted(done.items())
        ],
        "queues": {name: s.queued for name, s in sorted(stats.items())},
        "workers": [worker_row(w) for w in workers],
        "running": await running_jobs(broker, list(stats)) if with_running else [],
    }


def worker_row(worker: WorkerInfo) -> dict[str, Any]:
    """A worker as the pages show it."""
    return {
        "name": worker.name,
        "host": worker.host,
        "pid": worker.pid,
        "queues": ", ".join(worker.queues),
        "concurrency": worker.concurrency,
        "running": worker.running,
        "jobs_done": worker.jobs_done,
        "started": ago(worker.started_at),
        "jobs": [
            {"id": j.id, "task": j.task, "since": when(j.started_at), "ago": ago(j.started_at)}
            for j in worker.jobs
        ],
    }
