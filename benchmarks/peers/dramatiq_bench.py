"""Dramatiq, driven as its docs show: ``RedisBroker``, ``actor.send()`` and the ``dramatiq``
CLI, one worker process (``--processes 1``; its default is one per core) with its default 8
threads and default middleware (retries, time limit, ...). Plain functions only here."""

from __future__ import annotations

import os
import sys
from importlib.metadata import version

from benchmarks.peers.base import NotSupported, System, task_name

__all__ = ["Bench"]


class Bench(System):
    name = "dramatiq"
    driven = (
        "`dramatiq benchmarks.peers.dramatiq_app --processes 1 --threads 8` (RedisBroker, "
        "default middleware); producer `actor.send()`"
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        os.environ["BENCH_REDIS_URL"] = url  # the module builds its broker from it on import
        from benchmarks.peers import dramatiq_app

        self.broker = dramatiq_app.broker
        self.actors = dramatiq_app.actors

    async def open(self) -> None:
        self.broker.client.ping()

    async def close(self) -> None:
        self.broker.close()

    async def enqueue(self, *, sync_job: bool = False, body: str = "noop") -> None:
        if not sync_job:
            raise NotSupported("plain functions only in this benchmark")
        self.actors[task_name(body, sync_job)].send()

    async def enqueue_stamped(self, sent: float) -> None:
        self.actors["stamp"].send(sent)

    def enqueue_blocking(self) -> None:
        self.actors["noop_sync"].send()

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "dramatiq", "benchmarks.peers.dramatiq_app",
            "--processes", "1", "--threads", "8",
        ]  # fmt: skip

    def versions(self) -> dict[str, str]:
        return {"dramatiq": version("dramatiq")}
