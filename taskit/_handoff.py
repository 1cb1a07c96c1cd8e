"""The hand-off between a worker's fetcher and its runners: reserved jobs, first in first out.

What waits here is reserved (leased) but not started: taken by a runner as soon as one is idle,
or buffered beyond the idle runners up to the worker's ``prefetch``. Those waiting jobs are the
worker's too: the heartbeat keeps their leases (``__iter__``), a lost lease or a cancel takes them
out unrun (``take_stopped``) and a stop hands them all back (``take_all``).

A plain deque with one wake-up event: cheaper per job than a memory object stream, which matters
when a worker runs thousands of short jobs a second. Single event loop only (like the worker).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import anyio

from taskit.execution import RunningJob

__all__ = ["Handoff"]


class Handoff:
    """Jobs waiting for a runner. ``get`` returns ``None`` once closed and empty."""

    def __init__(self) -> None:
        self._items: deque[RunningJob] = deque()
        self._arrived = anyio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(self._items)

    def put(self, jobs: list[RunningJob]) -> None:
        self._items.extend(jobs)
        self._arrived.set()

    def take_all(self) -> list[RunningJob]:
        """Remove and return every waiting job (oldest first)."""
        taken = list(self._items)
        self._items.clear()
        return taken

    def take_stopped(self) -> list[RunningJob]:
        """Remove and return the waiting jobs that were stopped (``RunningJob.reason`` set)."""
        if all(job.reason is None for job in self._items):
            return []
        taken = [job for job in self._items if job.reason is not None]
        self._items = deque(job for job in self._items if job.reason is None)
        return taken

    def close(self) -> None:
        """No more jobs will come: waiting runners return ``None`` once it is empty."""
        self._closed = True
        self._arrived.set()

    async def get(self) -> RunningJob | None:
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed:
                return None
            if self._arrived.is_set():
                self._arrived = anyio.Event()  # the old one stays set for runners woken by it
            await self._arrived.wait()
