"""arq, driven as its docs show: ``create_pool(RedisSettings)``, ``await redis.enqueue_job(name)``
(``_defer_by`` for delayed jobs) and ``run_worker(WorkerSettings)``. arq runs only ``async``
functions and has no batch or sync enqueue."""

from __future__ import annotations

import sys
from importlib.metadata import version

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

from benchmarks.peers.base import NotSupported, System, task_name

__all__ = ["Bench"]


class Bench(System):
    name = "arq"
    driven = (
        "`run_worker(WorkerSettings)` (python -m benchmarks.peers.arq_app): defaults "
        "(max_jobs 10) but poll_delay 0.01 s (default 0.5 s); producer "
        "`await redis.enqueue_job('noop')`"
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.redis: ArqRedis | None = None

    async def open(self) -> None:
        self.redis = await create_pool(RedisSettings.from_dsn(self.url))

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    async def enqueue(self, *, sync_job: bool = False, body: str = "noop") -> None:
        if sync_job:
            raise NotSupported("arq runs async functions only")
        assert self.redis is not None
        await self.redis.enqueue_job(task_name(body, sync_job))

    async def enqueue_stamped(self, sent: float) -> None:
        assert self.redis is not None
        await self.redis.enqueue_job("stamp", sent)

    async def enqueue_delayed(self, delay: float) -> None:
        assert self.redis is not None
        await self.redis.enqueue_job("noop", _defer_by=delay)

    def worker_command(self) -> list[str]:
        return [sys.executable, "-m", "benchmarks.peers.arq_app"]

    def versions(self) -> dict[str, str]:
        return {"arq": version("arq")}
