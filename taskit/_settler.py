"""Batching settlements: a worker's finished jobs reach the broker in as few calls as possible.

Runners hand their outcomes to the ``Settler`` and go on with the next job at once. One task
sends everything that piled up while the previous call was in flight in a single
``Broker.settle`` call, so a busy worker pays one round trip per batch rather than per job, and
an idle one still settles each job the moment it ends (the batch is just smaller).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from taskit.backoff import Exponential
from taskit.errors import BrokerOutcomeUnknownError, TaskitError
from taskit.job import Outcome

if TYPE_CHECKING:
    from taskit.broker.base import Broker

__all__ = ["Settled", "Settler"]

log = logging.getLogger(__name__)

#: How long to keep retrying a settle call through a broker outage, as a share of the lease:
#: past the lease the jobs belong to whoever reclaims them, and their outcome no longer counts.
_OUTAGE_BACKOFF = Exponential(base=0.05, cap=2.0)


class Settled(enum.Enum):
    """What became of one outcome handed to the ``Settler``."""

    #: The broker applied it (on the first try, or a retry found the first try had applied).
    APPLIED = "applied"
    #: The broker refused it: the lease had passed to another worker. Nothing changed.
    STALE = "stale"
    #: Never delivered: the broker stayed unreachable for a whole lease (nothing was sent).
    UNDELIVERED = "undelivered"
    #: Sent, but the reply was lost, and no later try could tell whether it applied.
    UNKNOWN = "unknown"

    @property
    def meaning(self) -> str:
        """What happened, in the words of a log line ("job X: complete <meaning>")."""
        return _MEANING[self]


_MEANING = {
    Settled.APPLIED: "applied",
    Settled.STALE: "rejected, the lease had passed to another worker",
    Settled.UNDELIVERED: (
        "not delivered, the broker stayed unreachable for a whole lease; the job runs again "
        "once its lease is reclaimed"
    ),
    Settled.UNKNOWN: (
        "outcome unknown: the reply to the first try was lost and the retry found the lease "
        "gone (it may have applied; if not, the job runs again)"
    ),
}


class Settler:
    """Collects outcomes and settles them in batches.

    ``on_settled(outcome, settled)`` is called for each outcome once the broker answered, or
    after a lease of trying (``Settled`` says which).
    """

    def __init__(
        self, broker: Broker, lease: float, on_settled: Callable[[Outcome, Settled], None]
    ) -> None:
        self._broker = broker
        self._lease = lease
        self._on_settled = on_settled
        self._pending: list[Outcome] = []
        self._wake = anyio.Event()
        self._closed = False

    def submit(self, outcome: Outcome) -> None:
        """Queue an outcome; it is sent with the next batch."""
        self._pending.append(outcome)
        self._wake.set()

    def close(self) -> None:
        """No more outcomes will come: ``run`` returns once everything queued is settled."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Send batches until closed and drained. Sending is shielded from cancellation, so a
        batch taken from the queue is always delivered (or given up after one lease)."""
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            batch, self._pending = self._pending, []
            with anyio.CancelScope(shield=True):
                applied = await self._send(batch)
            for outcome, ok in zip(batch, applied, strict=True):
                self._on_settled(outcome, ok)

    async def _send(self, batch: list[Outcome]) -> list[Settled]:
        give_up = anyio.current_time() + self._lease
        failures = 0
        # Once a try was sent and its reply lost, a "stale" answer may be the lease having passed
        # on after that try applied (the broker answers "applied" only while it can tell).
        sent = False
        while True:
            try:
                applied = await self._broker.settle(batch)
            except (TaskitError, OSError) as exc:
                failures += 1
                sent = sent or isinstance(exc, BrokerOutcomeUnknownError)
                if anyio.current_time() >= give_up:
                    log.error("could not settle %d jobs for a whole lease: %s", len(batch), exc)
                    return [Settled.UNKNOWN if sent else Settled.UNDELIVERED] * len(batch)
                delay = _OUTAGE_BACKOFF(failures)
                if failures == 1 or failures % 20 == 0:
                    log.warning("settle failed (%s); retrying in %.2f s", exc, delay)
                await anyio.sleep(delay)
                continue
            refused = Settled.UNKNOWN if sent else Settled.STALE
            return [Settled.APPLIED if ok else refused for ok in applied]
