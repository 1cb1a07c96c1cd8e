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

__all__ = ["BODIES", "NotSupported", "System", "task_name"]

#: The job bodies: ``noop`` calls ``benchmarks.probe.tally`` (counted in the worker process);
#: ``ran`` and ``io`` are ``benchmarks.peers.bodies``' (a line appended to a file; one Redis call
#: and then that line).
BODIES = ("noop", "ran", "io")

#: How many enqueues a ``fill`` keeps in flight when a system has no batch API.
FILL_CONCURRENCY = 100


def task_name(body: str, sync_job: bool) -> str:
    """The task every app module registers for ``body``: ``io``, or ``io_sync`` (a ``def``)."""
    if body not in BODIES:
        raise ValueError(f"unknown job body {body!r}; expected one of {BODIES}")
    return f"{body}_sync" if sync_job else body


class NotSupported(Exception):
    """The system has no such operation (e.g. no sync enqueue, no batch enqueue)."""


class System(ABC):
    """A task system under test: producer calls plus how to start its worker."""

    name: str = ""
    #: How the worker is run and configured, for the report.
    driven: str = ""
    #: Whether every job runs in the one worker process started (``benchmarks.probe``'s
    #: in-process count needs it); False for Celery's prefork pool and RQ's forked work horses.
    one_process: bool = True
    #: The share of a drain's jobs this system is given (RQ's fork per job runs tens of jobs a
    #: second on a busy 2-core machine, so it gets a tenth, to keep a run's time bounded).
    drain_share: float = 1.0

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    async def open(self) -> None:
        """Connect the producer (and warm it up, so connecting is not timed)."""

    @abstractmethod
    async def close(self) -> None:
        """Release the producer's connections."""

    @abstractmethod
    async def enqueue(self, *, sync_job: bool = False, body: str = "noop") -> None:
        """Enqueue one job of ``body`` (``sync_job``: the plain ``def`` variant), one call per
        job (``task_name(body, sync_job)``)."""

    @abstractmethod
    async def enqueue_stamped(self, sent: float) -> None:
        """Enqueue one job that records ``time.monotonic() - sent`` when it starts."""

    async def enqueue_delayed(self, delay: float) -> None:
        """Enqueue one no-op job due in ``delay`` seconds."""
        raise NotSupported

    def enqueue_blocking(self) -> None:
        """Enqueue one no-op job from code without an event loop (the sync spelling)."""
        raise NotSupported

    async def enqueue_batch(
        self, count: int, *, sync_job: bool = False, body: str = "noop"
    ) -> None:
        """Enqueue ``count`` jobs of ``body`` in one call of the system's batch API."""
        raise NotSupported

    @abstractmethod
    def worker_command(self) -> list[str]:
        """argv of one worker process (run from the repository root)."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Package versions to report."""

    async def fill(
        self, count: int, *, sync_job: bool = False, delay: float = 0.0, body: str = "noop"
    ) -> None:
        """Queue ``count`` jobs as fast as the public API allows: the batch API when there is one,
        else ``FILL_CONCURRENCY`` single enqueues in flight. Not timed."""
        if not delay:
            try:
                for start in range(0, count, 1000):
                    await self.enqueue_batch(min(1000, count - start), sync_job=sync_job, body=body)
                return
            except NotSupported:
                pass
        if delay:
            await _concurrently(count, lambda: self.enqueue_delayed(delay))
        else:
            await _concurrently(count, lambda: self.enqueue(sync_job=sync_job, body=body))


async def _concurrently(count: int, call: Callable[[], Awaitable[None]]) -> None:
    for start in range(0, count, FILL_CONCURRENCY):
        await asyncio.gather(*(call() for _ in range(min(FILL_CONCURRENCY, count - start))))
