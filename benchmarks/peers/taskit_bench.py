"""taskit, driven by its public API: ``task.enqueue``, ``task.enqueue_sync``, ``app.enqueue_many``
and the ``taskit worker`` CLI with its default settings (concurrency 10)."""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from typing import Any

from benchmarks.peers.base import System, task_name
from benchmarks.peers.taskit_app import make_app
from taskit import App, Task

__all__ = ["Bench"]


class Bench(System):
    name = "taskit"
    driven = (
        "`taskit worker benchmarks.peers.taskit_app:app --log-level WARNING --loop L` (L: "
        "`BENCH_TASKIT_LOOP`, default auto: uvloop when installed, as in benchmarks/.venv-peers; "
        "defaults: concurrency 10, sync_concurrency 10); producer `await task.enqueue()`, "
        "`task.enqueue_sync()`, `app.enqueue_many([task.prepare() ...])`, `task.schedule(delay)`"
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.app: App = make_app(url)
        self.noop: Task[..., Any] = self.app.get_task("noop")
        self.stamp: Task[..., Any] = self.app.get_task("stamp")

    async def open(self) -> None:
        await self.app.stats()  # connects and loads the scripts

    async def close(self) -> None:
        await self.app.close()

    async def enqueue(self, *, sync_job: bool = False, body: str = "noop") -> None:
        await self.app.get_task(task_name(body, sync_job)).enqueue()

    async def enqueue_stamped(self, sent: float) -> None:
        await self.stamp.enqueue(sent)

    async def enqueue_delayed(self, delay: float) -> None:
        await self.noop.schedule(delay)

    def enqueue_blocking(self) -> None:
        self.noop.enqueue_sync()

    async def enqueue_batch(
        self, count: int, *, sync_job: bool = False, body: str = "noop"
    ) -> None:
        task = self.app.get_task(task_name(body, sync_job))
        await self.app.enqueue_many([task.prepare() for _ in range(count)])

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "taskit", "worker", "benchmarks.peers.taskit_app:app",
            "--log-level", "WARNING", "--loop", os.environ.get("BENCH_TASKIT_LOOP", "auto"),
        ]  # fmt: skip

    def versions(self) -> dict[str, str]:
        return {"taskit": version("taskit")}
