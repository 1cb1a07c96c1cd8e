"""The Broker contract: where jobs wait, who holds them, and how they end.

Every broker (memory, Redis, ...) implements this class with the same semantics, checked by one
conformance suite (``tests/broker/``). Each method is one atomic step: another client sees the
state before it or after it, never between. A network broker does each in one round trip.

Delivery is *fenced at-least-once*:

* ``reserve`` hands a job out under a **lease**: a fresh random token and a deadline on the
  broker's clock. The attempt is counted at that moment.
* Only the current token can ``extend`` or ``settle`` the job. A stale token changes nothing and
  is answered ``False`` / ``LeaseState.LOST``.
* A lease that passes its deadline is handed back by ``reclaim`` (to a worker that decides retry
  or dead letter); the job runs again only then, and its ``attempts`` shows it.

Ordering: within a queue, higher ``priority`` first, FIFO among equals. A job scheduled for a time
never becomes reservable before that time on the broker's clock.

Durations are float seconds; timestamps are seconds since the epoch on the broker's clock.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from taskit.job import Job, Lease, LeaseState, Outcome, QueueStats

__all__ = ["Broker"]


class Broker(abc.ABC):
    """Abstract base of every broker. Subclasses must be safe to share between tasks of one
    event loop; the memory broker is also safe across threads."""

    @abc.abstractmethod
    async def enqueue(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job]:
        """Store ``jobs`` (all or none) and return them as stored.

        A job is due at ``max(job.scheduled_at, now + delays[i])`` (either may be absent); a job
        due in the future is SCHEDULED, otherwise PENDING. A job whose id already exists and is not
        finished is left as it is and returned instead (unique jobs: nothing new is enqueued).
        A finished job with that id is replaced. Raises ``SerializationError`` before storing
        anything if a job cannot be encoded.
        """

    def enqueue_blocking(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job] | None:
        """``enqueue`` for a thread without a running event loop, blocking it: the same result
        and errors, or None when this broker has no such path (the caller then runs ``enqueue``
        on an event loop). Optional; the default has none."""
        return None

    @abc.abstractmethod
    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        """Lease up to ``count`` ready jobs, taking ``queues`` in order (all of the first queue's
        ready jobs before any of the second's).

        Due scheduled jobs are promoted first. Each job handed out becomes RUNNING with
        ``attempts`` incremented, ``started_at`` set, and a lease of ``lease`` seconds. When no job
        is ready, waits up to ``timeout`` seconds for one (0: return at once); a scheduled job that
        falls due in that time wakes the wait. Returns an empty list if none came.

        Bytes that do not decode as a job are dead-lettered by the broker with the decode error
        (they cannot be returned); the call goes on with the other jobs.

        Cancel-safe: a reserve cancelled while it waits returns nothing and leases nothing; the
        step that takes jobs is shielded, so a cancelled call never leaves jobs leased unseen.
        """

    @abc.abstractmethod
    async def extend(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        """Push each held lease's deadline to now + ``lease`` seconds.

        Answers, per lease: HELD, LOST (the token is no longer current: do not settle), or
        CANCELLED (``cancel`` was called on the running job: stop it and settle with CANCEL; the
        lease is still extended).
        """

    @abc.abstractmethod
    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply each outcome if its token is current; ``False`` for a stale one (nothing changes).
        A lease past its deadline still settles until ``reclaim`` has taken it over.

        Idempotent for a retry: the same outcome (token and kind) sent again after it applied
        (its reply was lost) changes nothing and is answered ``True`` again, until the job is
        leased anew. A different kind under a token already settled is stale.

        COMPLETE / FAIL / CANCEL finish the job (its record then expires after the broker's result
        TTL); RETRY makes it RETRYING, due after ``delay``; DEAD_LETTER moves it to its queue's dead
        letters; RELEASE makes it PENDING at once and refunds the attempt (shutdown, not failure).
        A RETRY or RELEASE of a job whose cancel was requested while it ran ends it CANCELLED.
        """

    @abc.abstractmethod
    async def reclaim(
        self, queues: Sequence[str], *, lease: float, limit: int = 100
    ) -> list[Lease]:
        """Take over up to ``limit`` jobs of ``queues`` whose lease deadline has passed.

        Each comes back under a fresh token and lease (its old token is dead from here on) and
        with ``attempts`` unchanged; the caller settles it with RETRY or DEAD_LETTER. If the caller
        dies first, the new lease expires and the job is reclaimed again: nothing is lost.
        """

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """The job with that id, or ``None`` (never existed, or its finished record expired)."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> bool:
        """Cancel a job. PENDING, SCHEDULED or RETRYING: leaves its queue, CANCELLED, ``True``.
        RUNNING: cancel requested (the worker learns it when it next extends), ``True``.
        Finished or unknown: nothing changes, ``False``."""

    @abc.abstractmethod
    async def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Counts per queue, for ``queues`` or for every queue the broker knows. O(1) per queue."""

    @abc.abstractmethod
    async def dead_letters(self, queue: str, *, limit: int = 100, offset: int = 0) -> list[Job]:
        """Dead-lettered jobs of ``queue``, oldest first, with their errors."""

    @abc.abstractmethod
    async def requeue_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Make dead letters PENDING again (all of ``queue``'s when ``job_ids`` is None) with
        ``attempts`` reset to 0. Returns how many were requeued; unknown ids are skipped."""

    @abc.abstractmethod
    async def purge(self, queue: str) -> int:
        """Delete ``queue``'s waiting jobs (PENDING, SCHEDULED, RETRYING); running jobs are left.
        Returns how many were deleted."""

    @abc.abstractmethod
    async def purge_dead(self, queue: str) -> int:
        """Delete ``queue``'s dead letters. Returns how many were deleted."""

    # -- coordination between processes (scheduler claims, worker heartbeats) ------------------
    @abc.abstractmethod
    async def claim(self, key: str, ttl: float) -> bool:
        """Take ``key`` for ``ttl`` seconds (> 0) if nobody holds it: ``True`` for the one caller
        that took it, ``False`` while it is held. Claims are apart from jobs and queues, and
        nothing releases one early: it expires. This is how any number of schedulers agree that
        exactly one of them enqueues each due run."""

    @abc.abstractmethod
    async def heartbeat(
        self, name: str | None = None, record: bytes = b"", *, ttl: float = 0.0
    ) -> dict[str, bytes]:
        """Announce that ``name`` is alive, with ``record``, for ``ttl`` seconds (``ttl <= 0``:
        withdraw it now); with ``name`` None change nothing. Then return every live
        announcement by name (expired ones are forgotten). One atomic step; times are the
        broker's clock. Workers use it to register themselves and to count who is alive."""

    async def close(self) -> None:  # noqa: B027 - optional hook: brokers without resources keep it
        """Release connections. The broker may be used again afterwards (it reconnects)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
