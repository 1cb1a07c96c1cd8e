"""SAQ, driven as its docs show: ``Queue.from_url``, ``await queue.enqueue(name, **kwargs)``
(``scheduled=`` for delayed jobs) and the ``saq`` CLI with a settings dict (concurrency 10, its
default). SAQ runs ``def`` functions in a thread pool; it has no batch or sync enqueue."""

from __future__ import annotations

import sys
import time
from importlib.metadata import version

from saq import Queue

from benchmarks.peers.base import System, task_name
from benchmarks.peers.saq_app import make_queue

__all__ = ["Bench"]


class Bench(System):
    name = "saq"
    driven = (
        "`saq benchmarks.peers.saq_app.settings` (concurrency 10, the default); producer "
        "`await queue.enqueue('noop')`"
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.queue: Queue = make_queue(url)

    async def open(self) -> None:
        await self.queue.connect()
        await self.queue.info()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self, *, sync_job: bool = False, body: str = "noop") -> None:
        await self.queue.enqueue(task_name(body, sync_job))

    async def enqueue_stamped(self, sent: float) -> None:
        await self.queue.enqueue("stamp", sent=sent)

    async def enqueue_delayed(self, delay: float) -> None:
        await self.queue.enqueue("noop", scheduled=int(time.time() + delay))

    def worker_command(self) -> list[str]:
        return [sys.executable, "-m", "saq", "benchmarks.peers.saq_app.settings"]

    def versions(self) -> dict[str, str]:
        return {"saq": version("saq")}
