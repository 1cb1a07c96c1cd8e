"""The producer: what turns prepared jobs into stored ones.

A ``Producer`` checks a batch (every item a ``Job``, no payload over ``max_payload_bytes``),
enqueues it in one broker call, all or none, inside the enqueue hooks (``taskit.hooks``), and
tells the event handlers. Tasks hold one (an App builds one and wires it to every task it
makes); it needs only a broker, the settings, the events, a sync bridge and the hooks, so a task
can be built and tested without an App.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from taskit._portal import SyncBridge
from taskit.broker.base import Broker
from taskit.config import Settings
from taskit.errors import PayloadTooLargeError
from taskit.events import Events
from taskit.hooks import Hooks
from taskit.job import Job

__all__ = ["Producer"]

T = TypeVar("T")


class Producer:
    """Stores prepared jobs through ``broker``, inside the enqueue hooks of ``hooks`` (default:
    none), and tells ``events`` (default: none subscribed).

    ``bridge`` runs async code for callers without an event loop (default: a new one, whose
    thread starts on first use; ``stop()`` it when done). ``broker`` may be replaced later
    (``App.broker = ...`` does, as ``taskit.testing.Harness`` relies on).
    """

    __slots__ = ("bridge", "broker", "events", "hooks", "settings")

    def __init__(
        self,
        broker: Broker,
        settings: Settings,
        events: Events | None = None,
        bridge: SyncBridge | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.events = events if events is not None else Events()
        self.bridge = bridge if bridge is not None else SyncBridge()
        self.hooks = hooks if hooks is not None else Hooks()

    def __repr__(self) -> str:
        return f"<Producer broker={type(self.broker).__name__}>"

    async def submit(self, jobs: Sequence[Job], delays: Sequence[float] | None = None) -> list[Job]:
        """Check and enqueue ``jobs`` (each after its delay in ``delays``, seconds); returns them
        as stored. ``TypeError`` for an item that is not a ``Job``, ``PayloadTooLargeError`` for
        a payload over the limit: either way nothing is stored."""
        self.check_batch(jobs)
        if not self.hooks and not self.events:  # the common call, one coroutine less
            return await self.broker.enqueue(jobs, delays=delays)
        if not self.hooks:
            return await self._store(jobs, delays)
        with self.hooks.enqueueing(jobs) as hooked:
            return await self._store(hooked, delays)

    def submit_sync(self, jobs: Sequence[Job], delays: Sequence[float] | None = None) -> list[Job]:
        """``submit`` from a thread without an event loop: on the broker's blocking path when
        it has one and no event handler needs the loop, else on the bridge's loop thread. The
        enqueue hooks run in the calling thread (its context is the one they see).
        ``RuntimeError`` when called from async code."""
        self.bridge.refuse_async()
        self.check_batch(jobs)
        if not self.hooks:
            return self._store_sync(jobs, delays)
        with self.hooks.enqueueing(jobs) as hooked:
            return self._store_sync(hooked, delays)

    def _store_sync(self, jobs: Sequence[Job], delays: Sequence[float] | None) -> list[Job]:
        if not self.events:
            stored = self.broker.enqueue_blocking(jobs, delays=delays)
            if stored is not None:
                return stored
        return self.run_sync(self._store, jobs, delays)

    def check_batch(self, jobs: Sequence[Job]) -> None:
        """Refuse the whole batch before any is stored (see ``submit``)."""
        limit = self.settings.max_payload_bytes
        for job in jobs:
            if not isinstance(job, Job):
                raise TypeError(
                    f"expected Job objects (task.prepare(...)), got {type(job).__name__}"
                )
            if len(job.payload) > limit:
                raise PayloadTooLargeError(job.id, len(job.payload), limit)

    def run_sync(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` on the bridge's loop thread, for code without an event loop;
        ``RuntimeError`` when called from async code."""
        return self.bridge.call(fn, *args)

    async def _store(self, jobs: Sequence[Job], delays: Sequence[float] | None) -> list[Job]:
        """Enqueue checked ``jobs`` and tell the event handlers."""
        stored = await self.broker.enqueue(jobs, delays=delays)
        if self.events:
            await self.events.created(jobs, stored)
        return stored
