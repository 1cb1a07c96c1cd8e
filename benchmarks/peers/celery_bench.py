"""Celery, driven as its docs show: ``task.delay()`` (``apply_async``) and the ``celery worker``
CLI on the Redis transport, its default prefork pool at its default concurrency (one child per
core; every process's CPU counted). Plain functions only; no batch or sync-only spelling (its
calls block, so the async scenarios call them directly)."""

from __future__ import annotations

import sys
from importlib.metadata import version

from benchmarks.peers.base import NotSupported, System, task_name

__all__ = ["Bench"]


class Bench(System):
    name = "celery"
    one_process = False
    driven = (
        "`celery -A benchmarks.peers.celery_app worker --loglevel WARNING` (Redis transport, "
        "prefork pool and concurrency at their defaults: one child per core, no result "
        "backend); producer `task.delay()`"
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from benchmarks.peers import celery_app

        celery_app.app.conf.broker_url = url
        self.app = celery_app.app
        self.tasks = celery_app.tasks

    async def open(self) -> None:
        self.tasks["ran_sync"].app.connection_for_write().ensure_connection()

    async def close(self) -> None:
        self.app.close()

    async def enqueue(self, *, sync_job: bool = False, body: str = "noop") -> None:
        if not sync_job:
            raise NotSupported("Celery runs plain functions only")
        self.tasks[task_name(body, sync_job)].delay()

    async def enqueue_stamped(self, sent: float) -> None:
        self.tasks["stamp"].delay(sent)

    def enqueue_blocking(self) -> None:
        self.tasks["noop_sync"].delay()

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "benchmarks.peers.celery_app", "worker",
            "--loglevel", "WARNING",
        ]  # fmt: skip

    def versions(self) -> dict[str, str]:
        return {"celery": version("celery"), "kombu": version("kombu")}
