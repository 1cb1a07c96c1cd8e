"""A bell one thread sleeps on and another rings: a socket pair, rung by one byte.

Why not a lock released to wake the sleeper: ``Lock.release`` keeps the GIL, so the woken thread
(on the same core, it often preempts the ringer) finds the GIL taken, sleeps again on it and is
woken a second time when the ringer lets go, at its next blocking call. A sleeper that must run
Python at once pays four context switches a wake where two would do. ``send`` lets go of the GIL
around the system call that wakes the sleeper: it can take the GIL and run at once.

Measured with one handler thread and sequential calls (``benchmarks/handler_hop.py``): six
context switches a call with a lock, two with a bell, and less CPU a call.
"""

from __future__ import annotations

import socket

__all__ = ["Bell"]


class Bell:
    """Rung (``ring``) by any thread, waited on (``wait``) by one. Each ring is kept until a wait
    takes it, so a ring before the wait is not lost; the caller keeps rings to one per wait (a
    socket buffer holds plenty, but nothing here is meant to count). ``close()`` once no thread
    rings or waits any more. ``OSError`` from the constructor when no socket can be had."""

    __slots__ = ("_rx", "_tx")

    def __init__(self, timeout: float) -> None:
        self._rx, self._tx = socket.socketpair()
        self._rx.settimeout(timeout)

    def ring(self) -> None:
        self._tx.send(b"\0")

    def wait(self) -> bool:
        """Whether a ring came (``False``: none within the timeout given at construction)."""
        try:
            return bool(self._rx.recv(1))
        except TimeoutError:
            return False

    def close(self) -> None:
        self._rx.close()
        self._tx.close()
