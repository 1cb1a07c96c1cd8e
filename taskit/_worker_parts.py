"""What a worker is built from (``WorkerParts``, or anything shaped as ``WorkerSource``, such as
an ``App``) and what one run of it did (``WorkerStats``). Apart from ``taskit.worker`` so the
worker's loop stays one module's job; both are re-exported there."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from taskit._settler import Settled
from taskit.broker.base import Broker
from taskit.config import Settings
from taskit.events import Events
from taskit.hooks import Hooks
from taskit.job import OutcomeKind
from taskit.limits import LimitSpec

if TYPE_CHECKING:
    from taskit.task import Task

__all__ = ["WorkerParts", "WorkerSource", "WorkerStats"]


@dataclass
class WorkerStats:
    """What one ``run`` did, by outcome."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0
    released: int = 0
    #: Outcomes the broker refused: the lease had passed to another worker.
    lost: int = 0
    #: Outcomes never delivered (the broker unreachable for a whole lease): the job runs again.
    undelivered: int = 0
    #: Outcomes sent whose reply was lost, where no retry could tell whether they applied.
    unknown: int = 0

    def __post_init__(self) -> None:
        # Not a field: counts come from the event loop and a chain's thread (``taskit._chain``).
        self._lock = threading.Lock()

    def count(self, kind: OutcomeKind | Settled | None) -> None:
        """Count one outcome applied (its kind), or one that was not (None: the lease was lost).
        From any thread."""
        attr = _STAT_OF.get(kind, "lost")
        with self._lock:
            setattr(self, attr, getattr(self, attr) + 1)

    @property
    def jobs_done(self) -> int:
        """Jobs whose outcome the broker applied (released ones excepted: they run again)."""
        return self.completed + self.failed + self.retried + self.dead_lettered + self.cancelled


_STAT_OF: dict[OutcomeKind | Settled | None, str] = {
    Settled.STALE: "lost",
    Settled.UNDELIVERED: "undelivered",
    Settled.UNKNOWN: "unknown",
    OutcomeKind.COMPLETE: "completed",
    OutcomeKind.FAIL: "failed",
    OutcomeKind.RETRY: "retried",
    OutcomeKind.DEAD_LETTER: "dead_lettered",
    OutcomeKind.CANCEL: "cancelled",
    OutcomeKind.RELEASE: "released",
}


class WorkerSource(Protocol):
    """What a worker is built from: an ``App`` is one, a ``WorkerParts`` another. A ``hooks``
    attribute (``taskit.hooks.Hooks``) and a ``limits`` one (declared limit definitions by
    name), which both have, are read when present."""

    @property
    def broker(self) -> Broker: ...
    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def events(self) -> Events | None: ...
    @property
    def broker_url(self) -> str: ...


@dataclass(frozen=True, kw_only=True)
class WorkerParts:
    """What a worker runs on: the ``broker``; the ``tasks`` it can run, by name (read at each
    job: a live view such as ``App.tasks`` sees tasks registered later); the ``settings`` it
    takes its defaults, lease, grace period and intervals from; the ``events`` subscribers to
    tell (none: no events); ``broker_url``, how its log lines name the broker (default: the
    broker's class); the ``hooks`` whose run hooks follow each attempt (none: no hooks); and
    the ``limits`` it declares, written before its first reserve where the broker has none
    (``taskit._declare_limits``; none: nothing written)."""

    broker: Broker
    tasks: Mapping[str, Task[Any, Any]]
    settings: Settings = dataclasses.field(default_factory=Settings)
    events: Events | None = None
    broker_url: str = ""
    hooks: Hooks | None = None
    limits: Mapping[str, LimitSpec] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.broker_url:
            object.__setattr__(self, "broker_url", type(self.broker).__name__)
