"""The one interface the runner drives every system through.

An adapter is opened once per scenario, against a freshly flushed Redis, as a producer in the
runner's process; its worker runs as separate processes started from ``worker_command``. Each
system's job functions live in its ``*_app`` module and call ``benchmarks.probe`` so every job
proves it ran. Unsupported operations raise ``NotSupported`` (shown as n/a).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

__all__ = ["NotSupported", "System"]

#: How many enqueues a ``fill`` keeps in flight when a system has no batch API.
FILL_CONCURRENCY = 100


class NotSupported(Exception):
    """The system has no such operation (e.g. no sync enqueue, no batch enqueue)."""


class System(ABC):
    """A task system under test: producer calls plus how to start its worker."""

    name: str = ""
    #: How the worker is run and configured, for the report.
    driven: str = ""

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    async def open(self) -> None:
        """Connect the producer (and warm it up, so connecting is not timed)."""

    @abstractmethod
    async def close(self) -> None:
        """Release the producer's connections."""

    @abstractmethod
    async def enqueue(self, *, sync_job: bool = False) -> None:
        """Enqueue one no-op job (``sync_job``: the plain ``def`` variant), one call per job."""

    @abstractmethod
    async def enqueue_stamped(self, sent: float) -> None:
        """Enqueue one job that records ``time.monotonic() - sent`` when it starts."""

    async def enqueue_delayed(self, delay: float) -> None:
        """Enqueue one no-op job due in ``delay`` seconds."""
        raise NotSupported

    def enqueue_blocking(self) -> None:
        """Enqueue one no-op job from code without an event loop (the sync spelling)."""
        raise NotSupported

    async def enqueue_batch(self, count: int, *, sync_job: bool = False) -> None:
        """Enqueue ``count`` no-op jobs in one call of the system's batch API."""
        raise NotSupported

    @abstractmethod
    def worker_command(self) -> list[str]:
        """argv of one worker process (run from the repository root)."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Package versions to report."""

    async def fill(self, count: int, *, sync_job: bool = False, delay: float = 0.0) -> None:
        """Queue ``count`` jobs as fast as the public API allows: the batch API when there is one,
        else ``FILL_CONCURRENCY`` single enqueues in flight. Not timed."""
        if not delay:
            try:
                for start in range(0, count, 1000):
                    await self.enqueue_batch(min(1000, count - start), sync_job=sync_job)
                return
            except NotSupported:
                pass
        if delay:
            await _concurrently(count, lambda: self.enqueue_delayed(delay))
        else:
            await _concurrently(count, lambda: self.enqueue(sync_job=sync_job))


async def _concurrently(count: int, call: Callable[[], Awaitable[None]]) -> None:
    for start in range(0, count, FILL_CONCURRENCY):
        await asyncio.gather(*(call() for _ in range(min(FILL_CONCURRENCY, count - start))))
