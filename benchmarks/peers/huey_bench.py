"""Huey, driven as its docs show: ``RedisHuey``, calling a task to enqueue it, and
``huey_consumer`` with thread workers (``-k thread -w 8``: its docs' advice for I/O-bound tasks;
one process) and ``-q`` (no per-task INFO lines). Plain functions only; the tasks return
``None``, so no result is stored."""

from __future__ import annotations

import os
import sys
from importlib.metadata import version

from benchmarks.peers.base import NotSupported, System, task_name

__all__ = ["Bench"]


class Bench(System):
    name = "huey"
    driven = (
        "`huey_consumer benchmarks.peers.huey_app.huey -k thread -w 8 -q` (RedisHuey, blocking "
        "dequeue, its default); producer: calling the task"
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        os.environ["BENCH_REDIS_URL"] = url  # the module builds its Huey from it on import
        from benchmarks.peers import huey_app

        self.huey = huey_app.huey
        self.tasks = huey_app.tasks

    async def open(self) -> None:
        self.huey.storage.conn.ping()

    async def close(self) -> None:
        self.huey.storage.conn.close()

    async def enqueue(self, *, sync_job: bool = False, body: str = "noop") -> None:
        if not sync_job:
            raise NotSupported("Huey runs plain functions only")
        self.tasks[task_name(body, sync_job)]()

    async def enqueue_stamped(self, sent: float) -> None:
        self.tasks["stamp"](sent)

    def enqueue_blocking(self) -> None:
        self.tasks["noop_sync"]()

    def worker_command(self) -> list[str]:
        consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")
        return [consumer, "benchmarks.peers.huey_app.huey", "-k", "thread", "-w", "8", "-q"]

    def versions(self) -> dict[str, str]:
        return {"huey": version("huey")}
