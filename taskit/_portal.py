"""The sync bridge: an event loop on a daemon thread that runs coroutines for code without one
(a Flask view, a script), started on first use."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = ["SyncBridge", "start_portal"]


def start_portal() -> anyio.from_thread.BlockingPortal:
    """An event loop on a daemon thread (it never holds up interpreter exit)."""
    ready = threading.Event()
    holder: list[anyio.from_thread.BlockingPortal] = []

    async def serve() -> None:
        async with anyio.from_thread.BlockingPortal() as portal:
            holder.append(portal)
            ready.set()
            await portal.sleep_until_stopped()

    threading.Thread(target=anyio.run, args=(serve,), name="taskit-sync", daemon=True).start()
    ready.wait()
    return holder[0]


T = TypeVar("T")


class SyncBridge:
    """Runs coroutine functions for synchronous callers on a loop thread of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._portal: anyio.from_thread.BlockingPortal | None = None

    @staticmethod
    def refuse_async() -> None:
        """``RuntimeError`` in a thread that runs an event loop: a blocking call would block that
        loop (await the async method there instead)."""
        if asyncio._get_running_loop() is None and "trio" not in sys.modules:
            return  # surely no loop here: told without anyio's backend lookup (~1.5 µs a call)
        try:
            anyio.lowlevel.current_token()
        except RuntimeError:
            return
        raise RuntimeError(
            "a *_sync method was called from async code; await the async method instead"
        )

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` on the bridge's loop; ``RuntimeError`` from a thread that runs an
        event loop (it would block that loop: await ``fn`` there instead)."""
        self.refuse_async()
        with self._lock:
            if self._portal is None:
                self._portal = start_portal()
            portal = self._portal
        return portal.call(fn, *args)

    @property
    def running(self) -> bool:
        """Whether the loop thread is running (started by a ``call``, not yet stopped)."""
        return self._portal is not None

    def stop(self, before: Callable[[], Awaitable[None]] | None = None) -> bool:
        """Stop the loop thread (after running ``before`` on it), if it was started; whether it
        was."""
        with self._lock:
            portal, self._portal = self._portal, None
        if portal is None:
            return False
        if before is not None:
            portal.call(before)
        portal.call(portal.stop)
        return True
