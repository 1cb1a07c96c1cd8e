"""Unit tests of taskit.clock: the system clock and the fake clock tests move by hand."""

from __future__ import annotations

import math
import time

import pytest

from taskit.clock import FakeClock, SystemClock


def test_the_system_clock_is_wall_clock_time() -> None:
    before = time.time()
    now = SystemClock().time()
    after = time.time()

    assert before <= now <= after


def test_a_fake_clock_stands_still_until_moved() -> None:
    clock = FakeClock(start=100.0)

    assert clock.time() == clock.time() == 100.0


def test_a_fake_clock_starts_at_a_fixed_recent_time_by_default() -> None:
    assert FakeClock().time() == 1_700_000_000.0


def test_advance_moves_forward_and_returns_the_new_time() -> None:
    clock = FakeClock(start=100.0)

    assert clock.advance(2.5) == 102.5
    assert clock.advance(0) == 102.5
    assert clock.time() == 102.5


def test_set_jumps_forward_and_returns_the_new_time() -> None:
    clock = FakeClock(start=100.0)

    assert clock.set(150) == 150.0
    assert clock.set(150.0) == 150.0
    assert clock.time() == 150.0


def test_advance_refuses_to_go_backwards() -> None:
    clock = FakeClock(start=100.0)

    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-0.001)

    assert clock.time() == 100.0


def test_set_refuses_an_earlier_time() -> None:
    clock = FakeClock(start=100.0)

    with pytest.raises(ValueError, match="only moves forward"):
        clock.set(99.999)

    assert clock.time() == 100.0


def test_listeners_are_called_after_every_move_and_see_the_new_time() -> None:
    clock = FakeClock(start=0.0)
    seen: list[tuple[str, float]] = []
    clock.on_change(lambda: seen.append(("first", clock.time())))
    clock.on_change(lambda: seen.append(("second", clock.time())))

    clock.advance(1.0)
    clock.set(5.0)
    clock.advance(0)

    assert seen == [
        ("first", 1.0),
        ("second", 1.0),
        ("first", 5.0),
        ("second", 5.0),
        ("first", 5.0),
        ("second", 5.0),
    ]


def test_listeners_are_not_called_when_a_move_is_refused() -> None:
    clock = FakeClock(start=10.0)
    calls: list[float] = []
    clock.on_change(lambda: calls.append(clock.time()))

    with pytest.raises(ValueError, match="only moves forward"):
        clock.set(5.0)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1.0)

    assert calls == []


@pytest.mark.parametrize("move", ["advance", "set"])
def test_a_nan_move_is_refused(move: str) -> None:
    clock = FakeClock(start=100.0)

    with pytest.raises(ValueError, match="nan"):
        getattr(clock, move)(math.nan)
    assert clock.time() == 100.0
