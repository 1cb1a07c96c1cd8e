"""Dedup windows: how many jobs of one key a burst of enqueues makes.

A task (or one call) says ``dedup=Throttle(window, key=...)`` or ``dedup=Debounce(window,
key=...)``; when a job is prepared, its **dedup key** is computed from its arguments and it
carries a ``Dedup`` (``Job.dedup``): the mode, the key and the window. The broker decides, in
the same atomic step as the enqueue, what happens to it:

* **throttle**: the first job of a key in a window is kept; a job of that key enqueued while the
  window (``window`` seconds from the kept job's enqueue) is open is dropped, and the enqueue
  answers the kept job (``Job.duplicate`` is True). Unique for a period.
* **debounce**: the last one wins. A debounced job waits ``window`` seconds before it may run; a
  job of the same key enqueued meanwhile replaces its arguments (its spec) and pushes its start
  to now + ``window``, keeping its id (the enqueue answers that job, ``duplicate`` True). Once
  its window is over (due, started or finished) the next enqueue makes a new job.

Unique until finished is the job id (``options(job_id=...)``): an id already waiting or running
is kept, whatever the dedup. A key is the task's name and the value of one argument (``key=
"customer_id"``) or of a function of the arguments (``key=lambda customer_id, **_: ...``), or
the task's name alone (``key=None``: one window for the whole task).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from taskit.config import MAX_SECONDS

__all__ = ["Debounce", "Dedup", "DedupKey", "DedupPolicy", "Throttle", "check_dedup", "dedup_of"]

#: Where a dedup key comes from: an argument's name, a function of the arguments (called with
#: them all by name), or None (the task alone).
DedupKey = str | Callable[..., object] | None
#: The longest dedup key (task name and key) a job may carry.
MAX_KEY = 1000


class Dedup(msgspec.Struct, frozen=True, array_like=True):
    """What a job carries to its broker (``Job.dedup``): ``mode`` (``"throttle"`` or
    ``"debounce"``), its concrete ``key`` (``"<task>\\0<key>"``) and ``window`` seconds."""

    mode: Literal["throttle", "debounce"]
    key: str
    window: float


@dataclass(frozen=True, slots=True)
class Throttle:
    """Keep the first job of a key; drop the others enqueued within ``window`` seconds of it
    (the enqueue answers the kept job). ``key``: see ``DedupKey``."""

    window: float
    key: DedupKey = None

    def __post_init__(self) -> None:
        _check(self.window, self.key)


@dataclass(frozen=True, slots=True)
class Debounce:
    """Keep the last job of a key: each job waits ``window`` seconds before it may run, and a job
    of the same key enqueued meanwhile replaces its arguments and starts its wait again.
    ``key``: see ``DedupKey``."""

    window: float
    key: DedupKey = None

    def __post_init__(self) -> None:
        _check(self.window, self.key)


DedupPolicy = Throttle | Debounce


def _check(window: object, key: object) -> None:
    if (
        isinstance(window, bool)
        or not isinstance(window, int | float)
        or not (math.isfinite(window) and 0 < window <= MAX_SECONDS)
    ):
        raise ValueError(
            f"a dedup window must be seconds above 0 and at most ten years, got {window!r}"
        )
    if key is not None and not isinstance(key, str) and not callable(key):
        raise TypeError(
            "a dedup key must be an argument's name, a function of the arguments or None, "
            f"got {key!r}"
        )
    if isinstance(key, str) and not key:
        raise ValueError("a dedup key must name an argument, got ''")


def check_dedup(value: object) -> None:
    """The option's check: a ``Throttle`` or a ``Debounce`` (``TypeError`` otherwise)."""
    if not isinstance(value, Throttle | Debounce):
        raise TypeError(f"dedup must be Throttle(...) or Debounce(...), got {value!r}")


def dedup_of(policy: DedupPolicy, task: str, arguments: Mapping[str, Any]) -> Dedup:
    """The ``Dedup`` a job of ``task`` with bound ``arguments`` (defaults applied) carries.
    ``TypeError``/``ValueError`` naming the problem for an argument that is not there, or a key
    that is not text or an int, holds NUL, or is too long."""
    source = policy.key
    if source is None:
        key = task
    else:
        if isinstance(source, str):
            if source not in arguments:
                raise TypeError(f"task {task!r}: dedup key {source!r} is not an argument of it")
            value = arguments[source]
        else:
            value = source(**arguments)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TypeError(
                f"task {task!r}: a dedup key must be a str or an int, got {type(value).__name__}"
            )
        text = str(value)
        if "\0" in text:
            raise ValueError(f"task {task!r}: a dedup key may not hold NUL, got {text!r}")
        key = f"{task}\0{text}"
    if len(key) > MAX_KEY:
        raise ValueError(f"task {task!r}: dedup key too long ({len(key)} > {MAX_KEY} characters)")
    if isinstance(policy, Throttle):
        return Dedup("throttle", key, float(policy.window))
    return Dedup("debounce", key, float(policy.window))
