"""Wall clocks, injectable where time decides something: the memory broker (due times, leases,
result TTLs, claims) and the scheduler (due runs) take a ``Clock``; ``SystemClock`` by default,
a ``FakeClock`` that tests move by hand (``taskit.testing.Harness`` drives one)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """A source of wall-clock time in seconds since the epoch."""

    def time(self) -> float: ...


class SystemClock:
    """``time.time()``."""

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that stands still until ``advance()`` or ``set()`` moves it (forward only).

    A memory broker on it subscribes with ``on_change``: each move wakes its blocked reserves,
    so a delayed job that fell due is taken at once (on this clock the broker cannot time its
    waits to the next due job). Moving it is thread-safe; listeners run in the mover's thread,
    after the move.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (>= 0) and return the new time."""
        if not seconds >= 0:  # NaN fails this test too
            raise ValueError(f"a clock only moves forward; got {seconds!r} seconds")
        with self._lock:
            self._now += float(seconds)
            now, listeners = self._now, list(self._listeners)
        for listener in listeners:
            listener()
        return now

    def set(self, now: float) -> float:
        """Jump to ``now`` (not earlier than the current time) and return it."""
        with self._lock:
            if not now >= self._now:
                raise ValueError(f"a clock only moves forward: {now!r} < {self._now!r}")
            self._now = float(now)
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return self._now

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every move."""
        with self._lock:
            self._listeners.append(listener)
