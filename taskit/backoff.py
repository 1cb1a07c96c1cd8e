"""Retry-delay policies: pure functions of the attempt number that just failed.

A policy is any callable ``(attempt: int) -> float`` returning seconds; ``attempt`` is 1 for the
first run. :class:`Exponential` is the default: ``base * factor ** (attempt - 1)``, capped, with
"equal jitter" (a uniform draw from the upper half), so that retries of many jobs that failed
together spread out while each delay stays at least half the nominal one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from taskit.config import MAX_SECONDS

__all__ = ["Backoff", "BackoffPolicy", "Exponential", "Fixed", "as_policy"]

#: A retry-delay policy: attempt number (1-based) of the failed run -> delay in seconds.
BackoffPolicy = Callable[[int], float]
#: What ``@app.task(backoff=...)`` accepts: a base in seconds, or a policy.
Backoff = float | int | BackoffPolicy


@dataclass(frozen=True)
class Exponential:
    """``min(cap, base * factor ** (attempt - 1))``, with equal jitter when ``jitter`` is true."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.cap >= 0 and self.factor >= 1):  # NaN fails each test
            raise ValueError(
                f"Exponential backoff needs base >= 0, cap >= 0 and factor >= 1, got "
                f"base={self.base!r}, factor={self.factor!r}, cap={self.cap!r}"
            )

    def __call__(self, attempt: int) -> float:
        exponent = max(attempt, 1) - 1
        try:
            nominal = min(self.cap, self.base * self.factor**exponent)
        except OverflowError:  # the power left float range: a growing delay is long capped
            nominal = self.cap if self.base > 0 and self.factor > 1 else self.base
        if not self.jitter:
            return nominal
        return nominal / 2 + self.rng.uniform(0.0, nominal / 2)


@dataclass(frozen=True)
class Fixed:
    """The same delay after every failure."""

    delay: float

    def __post_init__(self) -> None:
        if not self.delay >= 0:  # NaN fails this test too
            raise ValueError(f"Fixed backoff needs delay >= 0, got {self.delay!r}")

    def __call__(self, attempt: int) -> float:
        return self.delay


def as_policy(backoff: Backoff) -> BackoffPolicy:
    """Turn a task's ``backoff`` option into a policy; a number is the exponential base."""
    if isinstance(backoff, bool):
        raise TypeError("backoff must be seconds (a number) or a callable attempt -> seconds")
    if isinstance(backoff, int | float):
        if not 0 <= backoff <= MAX_SECONDS:  # NaN and inf fail too, as for TASKIT_BACKOFF
            raise ValueError(
                "backoff (the exponential base) must be seconds from 0 to ten years, "
                f"got {backoff!r}"
            )
        return Exponential(base=float(backoff))
    if callable(backoff):
        return backoff
    raise TypeError(
        f"backoff must be seconds (a number) or a callable attempt -> seconds, got {backoff!r}"
    )
