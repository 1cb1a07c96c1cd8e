"""Batching settlements: a worker's finished jobs reach the broker in as few calls as possible.

Runners hand their outcomes to the ``Settler`` and go on with the next job at once. One task
sends everything that piled up while the previous call was in flight in a single
``Broker.settle`` call, so a busy worker pays one round trip per batch rather than per job, and
an idle one still settles each job the moment it ends (the batch is just smaller).

A batch never fails because of one member. Outcomes are checked one by one before they join it
(the executor's ``check_result``, and each broker's ``storable``); should a broker still refuse
a batch for what it holds (``SerializationError`` and the like, not an outage), its members are
settled one by one, and only one refused on its own is replaced by a FAIL of its job that names
the error. An outage is retried for the whole batch, as every member suffers it alike.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import msgspec

from taskit._outage import Outage
from taskit._storable import refused
from taskit.backoff import Exponential
from taskit.errors import BrokerOutcomeUnknownError, SerializationError, TaskitError
from taskit.job import Lease, Outcome, OutcomeKind

if TYPE_CHECKING:
    from taskit.broker.base import Broker

__all__ = ["Settled", "Settler", "Taking"]

log = logging.getLogger(__name__)

#: The pause between tries of a settle call through a broker outage. Tries go on for one lease
#: (``Settler._send``): past it the jobs belong to whoever reclaims them, and their outcome no
#: longer counts.
_OUTAGE_BACKOFF = Exponential(base=0.05, cap=2.0)
#: What a broker raises when it cannot store what a batch holds: no retry can help the batch.
_CONTENT_ERRORS = (SerializationError, TypeError, ValueError, OverflowError, msgspec.EncodeError)


class Settled(enum.Enum):
    """What became of one outcome handed to the ``Settler``."""

    #: The broker applied it (on the first try, or a retry found the first try had applied).
    APPLIED = "applied"
    #: The broker refused it: the lease had passed to another worker. Nothing changed.
    STALE = "stale"
    #: Never delivered: the broker stayed unreachable for a whole lease, or until a stopping
    #: worker gave up (nothing was sent).
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
        "not delivered, the broker could not be reached (nothing was sent); the job runs again "
        "once its lease is reclaimed"
    ),
    Settled.UNKNOWN: (
        "outcome unknown: a try was sent but its reply was lost, and no later answer could tell "
        "whether it applied (it may have; if not, the job runs again)"
    ),
}


class Taking:
    """A runner's next job, asked for with its outcome (``Settler.submit``). Answered once: the
    leases taken (an empty list: nothing was ready), or None (not taken with the settle: the
    runner reserves itself). Leases answered to a runner that went away (``abandon``) go to
    ``hand_back``: they are never left leased to nobody."""

    def __init__(
        self, queues: Sequence[str], lease: float, hand_back: Callable[[list[Lease]], None]
    ) -> None:
        self.queues = queues
        self.lease = lease
        self._hand_back = hand_back
        self._answered = anyio.Event()
        self._leases: list[Lease] | None = None
        self._abandoned = False

    def answer(self, leases: list[Lease] | None) -> None:
        """The settler's answer (once; later ones are ignored)."""
        if self._answered.is_set():
            return
        if self._abandoned:
            if leases:
                self._hand_back(leases)
            leases = None
        self._leases = leases
        self._answered.set()

    async def wait(self) -> list[Lease] | None:
        """The answer; cancelled, the runner abandons it (leases answered go back)."""
        try:
            await self._answered.wait()
        except BaseException:
            self.abandon()
            raise
        return self._leases

    @property
    def abandoned(self) -> bool:
        """Whether the runner went away (``abandon``)."""
        return self._abandoned

    def abandon(self) -> None:
        """The runner will not take the answer: leases already answered, or answered later,
        are handed back."""
        self._abandoned = True
        leases, self._leases = self._leases, None
        if leases:
            self._hand_back(leases)


class Settler:
    """Collects outcomes and settles them in batches.

    ``on_settled(outcome, settled)`` is called for each outcome once the broker answered, or
    after a lease of trying, or at the ``give_up_at`` of ``close`` (``Settled`` says which),
    with the outcome as settled: a FAIL in place of one the broker refused to store.
    ``after_batch()``, if given, is called once those calls for one batch are done (the worker
    writes the batch's log lines then, in one write).
    """

    def __init__(
        self,
        broker: Broker,
        lease: float,
        on_settled: Callable[[Outcome, Settled], None],
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        self._broker = broker
        self._lease = lease
        self._on_settled = on_settled
        self._after_batch = after_batch
        self._pending: list[Outcome] = []
        self._taking: Taking | None = None  # sent with the next batch
        #: Whether the broker has ``settle_and_reserve`` (until it answers None).
        self.takes = True
        self._wake = anyio.Event()
        self._closed = False
        self._give_up_at = math.inf  # anyio clock: set by close()
        self._sending: anyio.CancelScope | None = None  # run's, while it runs
        self._outage = Outage("settle", log, backoff=_OUTAGE_BACKOFF)
        # The batch in flight: whether a try of it may have reached the broker (sent, its reply
        # lost, or a call under way when it was given up); otherwise it was never delivered.
        self._maybe_sent = False

    def submit(self, outcome: Outcome, taking: Taking | None = None) -> None:
        """Queue an outcome; it is sent with the next batch. ``taking``: lease a runner's next
        job in the same broker call (one at a time; one already waiting is answered None)."""
        self._pending.append(outcome)
        if taking is not None:
            if self._taking is not None:
                self._taking.answer(None)
            if self.failing:  # retrying through an outage: the runner does not wait behind it
                taking.answer(None)
            else:
                self._taking = taking
        self._wake.set()

    @property
    def failing(self) -> bool:
        """Whether the last try to settle failed (the broker is down or refuses writes)."""
        return self._outage.failures > 0

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
        """Send batches until closed and drained. ``run`` is shielded from cancellation for its
        whole life (one scope, not one a batch: a worker of concurrency 1 sends a batch a job),
        so a batch taken from the queue is always delivered (or given up after one lease, or at
        the ``give_up_at`` of ``close``): its owner must ``close`` it on every way out, or it
        never returns. Outcomes still queued at ``give_up_at`` are reported undelivered."""
        batch: list[Outcome] = []  # the batch in flight
        try:
            with anyio.CancelScope(shield=True, deadline=self._give_up_at) as self._sending:
                while True:
                    if not self._pending:
                        if self._closed:
                            return
                        self._wake = anyio.Event()
                        await self._wake.wait()
                        continue
                    batch, self._pending = self._pending, []
                    taking, self._taking = self._taking, None
                    self._maybe_sent = False
                    settled = await self._settle(batch, taking)
                    batch = []
                    self._report(settled)
        finally:
            self._sending = None
            if self._taking is not None:
                self._taking.answer(None)
        # Given up at shutdown: unknown if a try may have reached the broker, else never
        # delivered (a broker that refused every connection got nothing; nor did those queued).
        gave_up = Settled.UNKNOWN if self._maybe_sent else Settled.UNDELIVERED
        unsent, self._pending = self._pending, []
        if not batch and not unsent:  # idle (closed, nothing queued) as the deadline passed
            return
        log.error(
            "gave up settling %d jobs as the worker stopped (the broker did not answer): "
            "their leases expire and they are reclaimed", len(batch) + len(unsent),
        )  # fmt: skip
        self._report(
            [(outcome, gave_up) for outcome in batch]
            + [(outcome, Settled.UNDELIVERED) for outcome in unsent]
        )

    def _report(self, settled: list[tuple[Outcome, Settled]]) -> None:
        try:
            for outcome, ok in settled:
                self._on_settled(outcome, ok)
        finally:
            if self._after_batch is not None:
                self._after_batch()

    async def _settle(
        self, batch: list[Outcome], taking: Taking | None = None
    ) -> list[tuple[Outcome, Settled]]:
        """Settle ``batch`` (and take ``taking``'s job with it); if the broker refuses it for
        what it holds, each member alone."""
        try:
            return list(zip(batch, await self._send(batch, taking), strict=True))
        except _CONTENT_ERRORS as exc:  # an outage is retried inside ``_send``, never seen here
            if len(batch) == 1:
                return [await self._fail_refused(batch[0], exc)]
            log.warning(
                "settling %d jobs together failed (%s); settling each alone", len(batch), exc
            )
            return [settled for outcome in batch for settled in await self._settle([outcome])]

    async def _fail_refused(self, outcome: Outcome, exc: Exception) -> tuple[Outcome, Settled]:
        """Settle a FAIL naming ``exc`` in place of ``outcome``, which the broker refused."""
        failed = refused(outcome, f"{type(exc).__name__}: {exc}")
        extra = {"job_id": outcome.job_id}
        log.error("job %s: the broker refused its %s outcome (%s); failing the job",
                  outcome.job_id, outcome.kind.value, exc, extra=extra)  # fmt: skip
        try:
            return failed, (await self._send([failed]))[0]
        except _CONTENT_ERRORS as again:
            log.error("job %s: not settled (%s); it runs again once its lease expires",
                      outcome.job_id, again, extra=extra)  # fmt: skip
            return outcome, Settled.UNDELIVERED

    async def _send(self, batch: list[Outcome], taking: Taking | None = None) -> list[Settled]:
        try:
            return await self._send_tries(batch, taking)
        finally:
            if taking is not None:  # not answered by the first try: the runner reserves itself
                taking.answer(None)

    async def _first(self, batch: list[Outcome], taking: Taking | None) -> list[bool]:
        """One call settling ``batch``, taking ``taking``'s job with it if the broker can."""
        if taking is not None and self.takes:
            both = await self._broker.settle_and_reserve(
                batch, taking.queues, count=1, lease=taking.lease
            )
            if both is not None:
                applied, leases = both
                if leases and taking.abandoned:
                    await self._release(leases)
                    leases = []
                taking.answer(leases)
                return applied
            self.takes = False  # this broker has no such step: settle alone from now on
        return await self._broker.settle(batch)

    async def _release(self, leases: list[Lease]) -> None:
        """Hand back leases taken for a runner that went away (a stop), at once and shielded,
        as a cancelled reserve hands back what it took: the settler's own deadline may have
        passed (a hard stop gives it a second), and a lease left to expire would cost its job
        an attempt it never ran. Bounded by one lease; should the broker fail, the leases
        expire and their jobs are reclaimed."""
        outcomes = [Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.RELEASE)
                    for held in leases]  # fmt: skip
        with anyio.move_on_after(self._lease, shield=True):
            try:
                await self._broker.settle(outcomes)
                return
            except (TaskitError, OSError) as exc:
                error: BaseException = exc
        log.warning("handing back %d jobs taken for a stopped runner failed (%s): they are "
                    "retried once their lease expires", len(leases), error)  # fmt: skip

    async def _send_tries(self, batch: list[Outcome], taking: Taking | None) -> list[Settled]:
        give_up = anyio.current_time() + self._lease
        # Once a try was sent and its reply lost, a "stale" answer may be the lease having passed
        # on after that try applied (the broker answers "applied" only while it can tell).
        sent = False
        while True:
            # Given up during the call (``close``'s deadline), this try may have been sent.
            before, self._maybe_sent = self._maybe_sent, True
            try:
                applied = await self._first(batch, taking)
            except SerializationError:
                raise  # about what the batch holds: retrying it cannot help (see ``_settle``)
            except (TaskitError, OSError) as exc:
                if taking is not None:  # the next tries settle alone
                    taking.answer(None)
                    taking = None
                sent = sent or isinstance(exc, BrokerOutcomeUnknownError)
                self._maybe_sent = before or sent
                if anyio.current_time() >= give_up:
                    log.error("could not settle %d jobs for a whole lease: %s", len(batch), exc)
                    return [Settled.UNKNOWN if sent else Settled.UNDELIVERED] * len(batch)
                await anyio.sleep(self._outage.failed(exc))
                continue
            self._outage.recovered()
            not_applied = Settled.UNKNOWN if sent else Settled.STALE
            return [Settled.APPLIED if ok else not_applied for ok in applied]
