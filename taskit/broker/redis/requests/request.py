"""The base of every request (``Request[T]``), the batch size, and the answers that are more
than a plain value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg
from taskit.job import Lease, Outcome

__all__ = ["BATCH", "DeadElsewhere", "Leased", "Moved", "Request"]

#: Jobs promoted, purged or requeued per script call: bounds how long one call holds Redis.
BATCH = 1000

T = TypeVar("T")


class Request(Generic[T]):
    """A script call: ``script``, its KEYS and ARGV, and ``answer``, its reply read as a ``T``."""

    __slots__ = ()
    script: ClassVar[ScriptName]

    def keys(self, k: Keys) -> list[str]:
        raise NotImplementedError

    def args(self) -> list[Arg]:
        raise NotImplementedError

    def answer(self, reply: Any) -> T:
        """The script's (non-error) ``reply`` as what it means."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Moved:
    """Cancel's answer when the job is not in the queue asked about: the queue it is in."""

    queue: str


@dataclass(frozen=True, slots=True)
class DeadElsewhere:
    """Enqueue's answer when job ``index`` (from 0) would replace a dead letter of ``queue``,
    whose dead set the next call must pass; nothing was written."""

    index: int
    queue: str


@dataclass(frozen=True, slots=True)
class Leased:
    """Reserve's and reclaim's answer: the ``leases``; the outcomes to ``settle`` at once
    (records that do not decode, dead-lettered; reclaimed jobs whose cancel was requested,
    cancelled); and, for reserve, seconds until the earliest delayed job is due (``wait``,
    None when something was leased or nothing is delayed)."""

    leases: list[Lease]
    settle: list[Outcome]
    wait: float | None = None
