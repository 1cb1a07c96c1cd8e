"""Batching settlements: a worker's finished jobs reach the broker in as few calls as possible.

Runners hand their outcomes to the ``Settler`` and go on with the next job at once. One task
sends everything that piled up while the previous call was in flight in a single
``Broker.settle`` call, so a busy worker pays one round trip per batch rather than per job, and
an idle one still settles each job the moment it ends (the batch is just smaller).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from taskit._outage import Outage
from taskit.backoff import Exponential
from taskit.errors import TaskitError
from taskit.job import Outcome

if TYPE_CHECKING:
    from taskit.broker.base import Broker

__all__ = ["Settler"]

log = logging.getLogger(__name__)

#: How long to keep retrying a settle call through a broker outage, as a share of the lease:
#: past the lease the jobs belong to whoever reclaims them, and their outcome no longer counts.
_OUTAGE_BACKOFF = Exponential(base=0.05, cap=2.0)


class Settler:
    """Collects outcomes and settles them in batches.

    ``on_settled(outcome, applied)`` is called for each outcome once the broker answered
    (``applied`` false: the token was stale, or the broker stayed unreachable for a lease).
    """

    def __init__(
        self, broker: Broker, lease: float, on_settled: Callable[[Outcome, bool], None]
    ) -> None:
        self._broker = broker
        self._lease = lease
        self._on_settled = on_settled
        self._pending: list[Outcome] = []
        self._wake = anyio.Event()
        self._closed = False
        self._give_up_at = math.inf  # anyio clock: set by close()
        self._sending: anyio.CancelScope | None = None  # the batch in flight
        self._outage = Outage("settle", log, backoff=_OUTAGE_BACKOFF)

    def submit(self, outcome: Outcome) -> None:
        """Queue an outcome; it is sent with the next batch."""
        self._pending.append(outcome)
        self._wake.set()

    def close(self, give_up_at: float = math.inf) -> None:
        """No more outcomes will come: ``run`` returns once everything queued is settled, or at
        ``give_up_at`` (anyio clock) for what the broker did not take by then: a stopping worker
        does not wait out a broker outage; those jobs' leases expire and they are reclaimed."""
        self._closed = True
        self._give_up_at = give_up_at
        if self._sending is not None:
            self._sending.deadline = give_up_at
        self._wake.set()

    async def run(self) -> None:
        """Send batches until closed and drained. Sending is shielded from cancellation, so a
        batch taken from the queue is always delivered (or given up after one lease, or at the
        ``give_up_at`` of ``close``)."""
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            batch, self._pending = self._pending, []
            applied = [False] * len(batch)
            with anyio.CancelScope(shield=True, deadline=self._give_up_at) as self._sending:
                applied = await self._send(batch)
            if self._sending.cancelled_caught:
                log.error(
                    "gave up settling %d jobs as the worker stopped (the broker did not answer): "
                    "their leases expire and they are reclaimed", len(batch),
                )  # fmt: skip
            self._sending = None
            for outcome, ok in zip(batch, applied, strict=True):
                self._on_settled(outcome, ok)

    async def _send(self, batch: list[Outcome]) -> list[bool]:
        give_up = anyio.current_time() + self._lease
        while True:
            try:
                applied = await self._broker.settle(batch)
            except (TaskitError, OSError) as exc:
                if anyio.current_time() >= give_up:
                    log.error("could not settle %d jobs for a whole lease: %s", len(batch), exc)
                    return [False] * len(batch)
                await anyio.sleep(self._outage.failed(exc))
                continue
            self._outage.recovered()
            return applied
