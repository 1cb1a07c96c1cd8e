"""How a refused command is tried again: within a deadline, pausing between tries.

A failover or a reshard takes from milliseconds to seconds, so the pause starts at
``FIRST_PAUSE`` and doubles up to ``LAST_PAUSE``; the tries end at the deadline (the broker
timeout from the first refusal). One ``Pacing`` per refused call; every transport (fast,
blocking, redis-py) and the broker's reserve use it.
"""

from __future__ import annotations

__all__ = ["FIRST_PAUSE", "LAST_PAUSE", "Pacing"]

#: Seconds between two tries of a refused command, doubling from the first up to the last.
FIRST_PAUSE = 0.02
LAST_PAUSE = 0.5


class Pacing:
    """The tries of one refused call: ``left(now)`` seconds remain until the deadline (<= 0:
    give up); ``step(left)`` is the pause before the next try (never past the deadline)."""

    def __init__(self, deadline: float, first: float = FIRST_PAUSE, last: float = LAST_PAUSE):
        self._deadline = deadline
        self._pause = first
        self._last = last

    def left(self, now: float) -> float:
        return self._deadline - now

    def step(self, left: float | None = None) -> float:
        """The next pause (at most ``left``), doubling the one after."""
        pause = self._pause if left is None else min(self._pause, left)
        self._pause = min(self._pause * 2, self._last)
        return pause
