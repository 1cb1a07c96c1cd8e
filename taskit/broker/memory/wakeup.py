"""Wake-ups that cross threads and event loops.

The memory broker may be shared by an event loop running a worker and another thread (a sync
web view enqueueing through the App's portal). ``anyio.Event`` is not thread-safe, so each waiter
remembers its loop, and a waker on another thread hands ``set()`` to that loop without waiting
for it: a waker may itself be an event loop (which must not block, and which Trio forbids from
making blocking calls into another Trio loop), and two loops waking each other must not deadlock.
"""

from __future__ import annotations

import logging
import threading

import anyio
import anyio.lowlevel

__all__ = ["Waiter", "wake_all"]

log = logging.getLogger(__name__)


class Waiter:
    """One task blocked until woken. Create it inside the task that will wait on it."""

    __slots__ = ("_event", "_thread", "_token")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._token = anyio.lowlevel.current_token()
        self._thread = threading.get_ident()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; ``True`` if woken."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        return self._event.is_set()

    def wake(self) -> None:
        """Wake the waiter, from any thread. Never raises."""
        if self._thread == threading.get_ident():
            self._event.set()
            return
        try:
            self._token.backend_class.run_sync_soon(self._event.set, (), self._token.native_token)
        except Exception:  # the waiter's loop has ended: no one is left to wake
            log.debug("waiter's event loop is gone; wake-up dropped", exc_info=True)


def wake_all(waiters: list[Waiter]) -> None:
    """Wake every waiter in ``waiters`` (call without holding any lock)."""
    for waiter in waiters:
        waiter.wake()
