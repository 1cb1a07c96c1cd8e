"""``Bell``, where an idle handler thread sleeps: a ring wakes the waiter, a ring before the wait
is kept for it, one ring serves one wait, and a wait with no ring ends at its timeout."""

from __future__ import annotations

import threading
import time

from taskit._bell import Bell

WAIT = 5.0  # upper bound on any wait: a hang fails the test instead of stalling the run


def test_a_ring_wakes_a_thread_waiting_on_the_bell() -> None:
    bell = Bell(WAIT)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(bell.wait()))
    try:
        waiter.start()
        bell.ring()
        waiter.join(WAIT)
        assert woke == [True]
    finally:
        bell.close()


def test_a_ring_before_the_wait_is_kept_and_serves_one_wait_only() -> None:
    bell = Bell(0.05)
    try:
        bell.ring()
        assert bell.wait() is True
        began = time.monotonic()
        assert bell.wait() is False  # the one ring was taken: this one times out
        assert time.monotonic() - began >= 0.04
    finally:
        bell.close()
