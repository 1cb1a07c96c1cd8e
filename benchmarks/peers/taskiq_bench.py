"""taskiq with taskiq-redis, driven as their docs show: ``await broker.startup()``,
``await task.kiq()`` and the ``taskiq worker`` CLI (one worker process, else its defaults:
max_async_tasks 100). No delayed enqueue without a scheduler process, no batch or sync enqueue."""

from __future__ import annotations

import sys
from importlib.metadata import version
from typing import Any

from taskiq import AsyncTaskiqDecoratedTask

from benchmarks.peers.base import System, task_name
from benchmarks.peers.taskiq_app import make_broker

__all__ = ["Bench"]


class Bench(System):
    name = "taskiq"
    driven = (
        "`taskiq worker benchmarks.peers.taskiq_app:broker --workers 1 --log-level WARNING` "
        "(RedisStreamBroker; max_async_tasks 100, the default); producer `await task.kiq()`"
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.broker = make_broker(url)
        self.tasks: dict[str, AsyncTaskiqDecoratedTask[Any, Any]] = self.broker.get_all_tasks()
        self.stamp = self.tasks["stamp"]

    async def open(self) -> None:
        await self.broker.startup()

    async def close(self) -> None:
        await self.broker.shutdown()

    async def enqueue(self, *, sync_job: bool = False, body: str = "noop") -> None:
        await self.tasks[task_name(body, sync_job)].kiq()

    async def enqueue_stamped(self, sent: float) -> None:
        await self.stamp.kiq(sent)

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "taskiq", "worker", "benchmarks.peers.taskiq_app:broker",
            "--workers", "1", "--log-level", "WARNING",
        ]  # fmt: skip

    def versions(self) -> dict[str, str]:
        return {"taskiq": version("taskiq"), "taskiq-redis": version("taskiq-redis")}
