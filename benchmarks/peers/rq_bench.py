"""RQ, driven as its docs show: ``Queue(connection=Redis)``, ``queue.enqueue(fn)``,
``queue.enqueue_many`` for a batch, and ``rq worker`` (its default ``Worker``, which forks a
work horse for each job; every process's CPU counted). Plain functions only."""

from __future__ import annotations

import os
import sys
from importlib.metadata import version

from redis import Redis
from rq import Queue

from benchmarks.peers import rq_app
from benchmarks.peers.base import NotSupported, System, task_name

__all__ = ["Bench"]


class Bench(System):
    name = "rq"
    one_process = False
    drain_share = 0.05
    driven = (
        "`rq worker --url URL --quiet` (its default `Worker`: a forked work horse per job; "
        "results kept 500 s, its default); producer `queue.enqueue(fn)`, "
        "`queue.enqueue_many` for a batch"
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.redis = Redis.from_url(url)
        self.queue = Queue("default", connection=self.redis)

    async def open(self) -> None:
        self.redis.ping()

    async def close(self) -> None:
        self.redis.close()

    async def enqueue(self, *, sync_job: bool = False, body: str = "noop") -> None:
        if not sync_job:
            raise NotSupported("RQ runs plain functions only")
        self.queue.enqueue(getattr(rq_app, task_name(body, sync_job)))

    async def enqueue_stamped(self, sent: float) -> None:
        self.queue.enqueue(rq_app.stamp, sent)

    def enqueue_blocking(self) -> None:
        self.queue.enqueue(rq_app.noop_sync)

    async def enqueue_batch(
        self, count: int, *, sync_job: bool = False, body: str = "noop"
    ) -> None:
        if not sync_job:
            raise NotSupported("RQ runs plain functions only")
        fn = getattr(rq_app, task_name(body, sync_job))
        self.queue.enqueue_many([Queue.prepare_data(fn) for _ in range(count)])

    def worker_command(self) -> list[str]:
        rq = os.path.join(os.path.dirname(sys.executable), "rq")
        return [rq, "worker", "--url", self.url, "--quiet", "default"]

    def versions(self) -> dict[str, str]:
        return {"rq": version("rq")}
