"""One producer process of ``benchmarks/shards.py``: enqueues the benchmark's no-op job.

    python -m benchmarks._producer URL MODE JOBS TASKS

``MODE`` is ``single`` (``TASKS`` coroutines, each awaiting one ``noop.enqueue()`` after
another, ``JOBS`` in all) or ``batch`` (``app.enqueue_many`` of ``BATCH`` prepared jobs a call,
one call after another, ``TASKS`` ignored). The process first warms up (``WARMUP`` single
enqueues: connections made, scripts loaded), then prints ``{"warmup": n}`` on a line and waits
for a line on stdin, so that every producer starts in the same moment; then it enqueues and
prints ``{"jobs": n, "seconds": s, "cpu": s}`` (its wall time and its own CPU time) and exits.
Every job it enqueued (the warm-up ones too) is one the workers must run.
"""

from __future__ import annotations

import json
import sys
import time

import anyio

from benchmarks.peers.taskit_app import make_app

__all__ = ["BATCH", "WARMUP"]

BATCH = 1000
WARMUP = 50


async def produce(url: str, mode: str, jobs: int, tasks: int) -> None:
    app = make_app(url)
    noop = app.get_task("noop")
    try:
        for _ in range(WARMUP):
            await noop.enqueue()
        print(json.dumps({"warmup": WARMUP}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        cpu, began = time.process_time(), time.perf_counter()
        if mode == "single":

            async def one_after_another(count: int) -> None:
                for _ in range(count):
                    await noop.enqueue()

            async with anyio.create_task_group() as tg:
                for k in range(tasks):
                    tg.start_soon(one_after_another, jobs // tasks + (k < jobs % tasks))
        elif mode == "batch":
            for first in range(0, jobs, BATCH):
                await app.enqueue_many([noop.prepare() for _ in range(min(BATCH, jobs - first))])
        else:
            raise SystemExit(f"mode must be single or batch, not {mode!r}")
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        print(json.dumps({"jobs": jobs, "seconds": seconds, "cpu": cpu}), flush=True)
    finally:
        await app.close()


if __name__ == "__main__":
    url, mode, jobs, tasks = sys.argv[1:5]
    anyio.run(produce, url, mode, int(jobs), int(tasks))
