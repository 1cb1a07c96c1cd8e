"""Flow-control definitions shared by the producer, the brokers and the admin tools.

A **limit** is named; its definition (``LimitSpec``) lives in the broker, so a change reaches every
worker at once. A job names the limits it needs as **limit keys** (``Job.limits``): the limit's
name alone for a global limit, or ``"<name>:<key>"`` for one key of a keyed limit (one customer,
one API token). Concurrency counts running jobs per limit key, under their leases; a rate counts
starts per limit key. ``LimitUsage`` is what a broker reports about one limit.
"""

from __future__ import annotations

import math

import msgspec

from taskit.config import MAX_COUNT, MAX_SECONDS

__all__ = ["LimitSpec", "LimitUsage", "check_limit_name", "limit_key", "limit_name"]

#: The longest limit name, and the longest limit key (name, ``:`` and key) a job may carry.
MAX_NAME = 200
MAX_KEY = 1000


class LimitSpec(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One limit's definition: at most ``concurrency`` jobs running at once per limit key, and/or
    at most ``rate`` starts per ``per`` seconds per limit key, with bursts of up to ``burst``
    starts (default ``rate``). ``None`` for either: that dimension is not limited. A
    concurrency of 0 holds every job back (the limit is paused)."""

    concurrency: int | None = None
    rate: int | None = None
    per: float = 1.0
    burst: int | None = None

    def __post_init__(self) -> None:
        for what, value, low in (("concurrency", self.concurrency, 0), ("rate", self.rate, 1),
                                 ("burst", self.burst, 1)):  # fmt: skip
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"limit {what} must be an int or None, got {value!r}")
            if not low <= value <= MAX_COUNT:
                raise ValueError(f"limit {what} must be from {low} to {MAX_COUNT}, got {value}")
        per = self.per
        if isinstance(per, bool) or not isinstance(per, int | float):
            raise TypeError(f"limit per must be seconds (a number), got {per!r}")
        if not (math.isfinite(per) and 0 < per <= MAX_SECONDS):
            raise ValueError(f"limit per must be finite seconds above 0, got {per!r}")
        if self.concurrency is None and self.rate is None:
            raise ValueError("a limit needs a concurrency, a rate, or both")
        if self.burst is not None and self.rate is None:
            raise ValueError("a limit's burst needs a rate")

    @property
    def bucket(self) -> int | None:
        """Starts allowed at once after an idle period (``burst``, else ``rate``)."""
        return self.burst if self.burst is not None else self.rate


class LimitUsage(msgspec.Struct, kw_only=True, frozen=True):
    """What a broker reports about one limit: its live definition (``None``: none stored, so
    jobs that name it run unlimited), the limit keys with running jobs and how many each holds,
    and the limit keys with jobs held back waiting for a slot and how many, each the ``top``
    largest (ties by key)."""

    name: str
    spec: LimitSpec | None
    running: dict[str, int]
    waiting: dict[str, int]


def check_limit_name(name: object) -> str:
    """``name`` if it is a valid limit name: non-empty text of at most ``MAX_NAME`` characters,
    without ``:`` (it separates the key) or NUL; else ``ValueError``/``TypeError`` naming it."""
    if not isinstance(name, str):
        raise TypeError(f"a limit name must be a string, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME or ":" in name or "\0" in name or name != name.strip():
        raise ValueError(
            f"a limit name must be 1 to {MAX_NAME} characters without ':', NUL or surrounding "
            f"spaces, got {name!r}"
        )
    return name


def limit_key(name: str, key: str | None = None) -> str:
    """The limit key of ``name`` for ``key`` (``None``: the global limit key, the name itself).
    A key may hold any character but NUL; ``ValueError`` for one too long or holding NUL."""
    check_limit_name(name)
    if key is None:
        return name
    if not isinstance(key, str):
        raise TypeError(f"limit {name!r}: a key must be a string, got {type(key).__name__}")
    if "\0" in key:
        raise ValueError(f"limit {name!r}: a key may not hold NUL, got {key!r}")
    full = f"{name}:{key}"
    if len(full) > MAX_KEY:
        raise ValueError(f"limit {name!r}: key too long ({len(full)} > {MAX_KEY} characters)")
    return full


def limit_name(limit_key: str) -> str:
    """The limit's name in a limit key (everything before the first ``:``)."""
    return limit_key.partition(":")[0]
