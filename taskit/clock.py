"""Clocks for the memory broker: the system clock, and a fake one that tests move by hand."""

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
    """A clock that stands still until ``advance()`` or ``set()`` moves it.

    Brokers that use it subscribe with ``on_change`` so that moving the clock wakes workers
    blocked on a delayed job. Thread-safe.
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
