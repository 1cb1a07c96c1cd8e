"""What each Lua script is given: one request object per script, building its KEYS and ARGV.

Each request names its script (``script``, the ``lua/<script>-<numkeys>.lua`` file) and builds
``keys(k)`` and ``args()`` in the order that file's header lists them, so the layout of a call
is written once, next to its peers, instead of inline in the broker's methods. A queue's keys
come from ``Keys.of`` with the selection the script's header names (``*_KINDS`` below);
``tests/broker/test_requests.py`` checks each request against its file: the key count, and each
queue key's kind.

Replies are read by the broker (they become Jobs and Leases, which needs its decoding).
Durations arrive here already in milliseconds (``ms``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg
from taskit.job import Job

__all__ = [
    "BATCH",
    "Announce",
    "Cancel",
    "DeadLetters",
    "Enqueue",
    "Extend",
    "Get",
    "Live",
    "Purge",
    "PurgeDead",
    "Reclaim",
    "Request",
    "RequeueDead",
    "Reserve",
    "Settle",
    "Stats",
    "Withdraw",
]

#: Jobs promoted, purged or requeued per script call: bounds how long one call holds Redis.
BATCH = 1000

# The keys of each queue a script takes, in the order of its header.
CANCEL_KINDS = ("fifo", "ranked", "delayed", "leases", "totals")
ENQUEUE_KINDS = ("fifo", "ranked", "delayed", "wake", "dead")
RECLAIM_KINDS = ("leases", "dead", "fifo", "ranked", "delayed")
REQUEUE_DEAD_KINDS = ("fifo", "ranked", "dead", "wake")
PURGE_KINDS = ("fifo", "ranked", "delayed")
RESERVE_KINDS = ("fifo", "ranked", "delayed", "leases", "dead", "wake")
SETTLE_KINDS = ("fifo", "ranked", "delayed", "leases", "dead", "totals", "wake")
STATS_KINDS = ("fifo", "ranked", "delayed", "leases", "dead", "totals")


class Request:
    """A script call's arguments: ``script`` and its KEYS and ARGV."""

    __slots__ = ()
    script: ClassVar[ScriptName]

    def keys(self, k: Keys) -> list[str]:
        raise NotImplementedError

    def args(self) -> list[Arg]:
        raise NotImplementedError


# -- reading and admin -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Get(Request):
    script: ClassVar[ScriptName] = "get"
    job_id: str

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.err, k.done(self.job_id)]

    def args(self) -> list[Arg]:
        return [self.job_id]


@dataclass(frozen=True, slots=True)
class Cancel(Request):
    script: ClassVar[ScriptName] = "cancel"
    job_id: str
    queue: str
    ttl_ms: int

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.err, k.done(self.job_id), *k.of(self.queue, CANCEL_KINDS)]

    def args(self) -> list[Arg]:
        return [self.job_id, self.queue, self.ttl_ms]


@dataclass(frozen=True, slots=True)
class Stats(Request):
    script: ClassVar[ScriptName] = "stats"
    queues: Sequence[str]

    def keys(self, k: Keys) -> list[str]:
        keys = [k.jobs, k.seq, k.err]
        for q in self.queues:
            keys += k.of(q, STATS_KINDS)
        return keys

    def args(self) -> list[Arg]:
        return [BATCH, *self.queues]


@dataclass(frozen=True, slots=True)
class DeadLetters(Request):
    script: ClassVar[ScriptName] = "dead-letters"
    queue: str
    offset: int
    limit: int

    def keys(self, k: Keys) -> list[str]:
        return [k.dead(self.queue), k.jobs, k.err]

    def args(self) -> list[Arg]:
        return [max(self.offset, 0), self.limit]


@dataclass(frozen=True, slots=True)
class RequeueDead(Request):
    """Requeue ``job_ids`` of ``queue``'s dead letters (at most ``BATCH``), or with None the
    oldest ``BATCH``."""

    script: ClassVar[ScriptName] = "requeue-dead"
    queue: str
    job_ids: Sequence[str] | None = None

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.seq, *k.of(self.queue, REQUEUE_DEAD_KINDS)]

    def args(self) -> list[Arg]:
        return [BATCH, *(self.job_ids or ())]


@dataclass(frozen=True, slots=True)
class Purge(Request):
    script: ClassVar[ScriptName] = "purge"
    queue: str

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.err, *k.of(self.queue, PURGE_KINDS)]

    def args(self) -> list[Arg]:
        return [BATCH]


@dataclass(frozen=True, slots=True)
class PurgeDead(Request):
    script: ClassVar[ScriptName] = "purge-dead"
    queue: str

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.err, k.dead(self.queue)]

    def args(self) -> list[Arg]:
        return [BATCH]


# -- coordination ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Announce(Request):
    script: ClassVar[ScriptName] = "announce"
    name: str
    record: bytes
    ttl_ms: int

    def keys(self, k: Keys) -> list[str]:
        return [k.workers, k.beats]

    def args(self) -> list[Arg]:
        return [self.name, self.record, self.ttl_ms]


@dataclass(frozen=True, slots=True)
class Withdraw(Request):
    script: ClassVar[ScriptName] = "withdraw"
    name: str

    def keys(self, k: Keys) -> list[str]:
        return [k.workers, k.beats]

    def args(self) -> list[Arg]:
        return [self.name]


@dataclass(frozen=True, slots=True)
class Live(Request):
    script: ClassVar[ScriptName] = "live"

    def keys(self, k: Keys) -> list[str]:
        return [k.workers, k.beats]

    def args(self) -> list[Arg]:
        return []


# -- the job lifecycle -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Enqueue(Request):
    """``jobs`` with their encoded ``specs``, ``delays_ms``, and the queue where each one's
    dead letter (if any) may be (``dead_in``: its own queue until a reply says otherwise)."""

    script: ClassVar[ScriptName] = "enqueue"
    jobs: Sequence[Job]
    specs: Sequence[bytes]
    delays_ms: Sequence[int]
    dead_in: Sequence[str]

    def _queues(self) -> dict[str, int]:
        """Each queue named (own or dead-letter), numbered from 1 in order of first mention."""
        queues: dict[str, int] = {}
        for job, dead in zip(self.jobs, self.dead_in, strict=True):
            queues.setdefault(job.queue, len(queues) + 1)
            queues.setdefault(dead, len(queues) + 1)
        return queues

    def keys(self, k: Keys) -> list[str]:
        keys = [k.jobs, k.err, k.seq, k.queues]
        for queue in self._queues():
            keys += k.of(queue, ENQUEUE_KINDS)
        keys += [k.done(job.id) for job in self.jobs]
        return keys

    def args(self) -> list[Arg]:
        queues = self._queues()
        args: list[Arg] = [len(queues), *queues]
        for job, spec, delay_ms, dead in zip(
            self.jobs, self.specs, self.delays_ms, self.dead_in, strict=True
        ):
            at = job.scheduled_at.timestamp() if job.scheduled_at is not None else None
            at_ms = -1 if at is None else math.ceil(at * 1000)
            meta = f"{queues[job.queue]} {queues[dead]} {-job.priority} {delay_ms} {at_ms}"
            args += [job.id, spec, meta, "" if at is None else repr(at)]
        return args


@dataclass(frozen=True, slots=True)
class Reserve(Request):
    """Lease up to ``count`` jobs of ``queues`` for ``lease_ms``, under tokens made from
    ``stem`` (random, fresh per call)."""

    script: ClassVar[ScriptName] = "reserve"
    queues: Sequence[str]
    count: int
    lease_ms: int
    stem: str

    def keys(self, k: Keys) -> list[str]:
        keys = [k.jobs, k.err, k.seq]
        for q in self.queues:
            keys += k.of(q, RESERVE_KINDS)
        return keys

    def args(self) -> list[Arg]:
        return [self.count, self.lease_ms, self.stem, BATCH, *self.queues]


@dataclass(frozen=True, slots=True)
class Extend(Request):
    """Extend each lease, given as (job id, queue, random part of its token), by ``lease_ms``."""

    script: ClassVar[ScriptName] = "extend"
    lease_ms: int
    leases: Sequence[tuple[str, str, str]]

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, *(k.leases(queue) for _, queue, _ in self.leases)]

    def args(self) -> list[Arg]:
        args: list[Arg] = [self.lease_ms]
        for job_id, _, rand in self.leases:
            args += [job_id, rand]
        return args


@dataclass(frozen=True, slots=True)
class Settle(Request):
    """Settle each outcome, given as (job id, random part of its token, kind, queue, delay in
    ms, encoded error or b"", encoded result or b""); a finished job's record is kept
    ``ttl_ms``."""

    script: ClassVar[ScriptName] = "settle"
    ttl_ms: int
    outcomes: Sequence[tuple[str, str, str, str, int, bytes, bytes]]

    def _queues(self) -> dict[str, int]:
        queues: dict[str, int] = {}
        for outcome in self.outcomes:
            queues.setdefault(outcome[3], len(queues) + 1)
        return queues

    def keys(self, k: Keys) -> list[str]:
        keys = [k.jobs, k.err, k.seq]
        for queue in self._queues():
            keys += k.of(queue, SETTLE_KINDS)
        keys += [k.done(outcome[0]) for outcome in self.outcomes]
        return keys

    def args(self) -> list[Arg]:
        queues = self._queues()
        args: list[Arg] = [self.ttl_ms, len(queues)]
        for job_id, rand, kind, queue, delay_ms, error, result in self.outcomes:
            args += [job_id, f"{rand} {kind} {queues[queue]} {delay_ms}", error, result]
        return args


@dataclass(frozen=True, slots=True)
class Reclaim(Request):
    """Re-lease up to ``limit`` expired leases of ``queues`` for ``lease_ms``."""

    script: ClassVar[ScriptName] = "reclaim"
    queues: Sequence[str]
    lease_ms: int
    limit: int
    stem: str

    def keys(self, k: Keys) -> list[str]:
        keys = [k.jobs, k.err, k.seq]
        for q in self.queues:
            keys += k.of(q, RECLAIM_KINDS)
        return keys

    def args(self) -> list[Arg]:
        return [self.lease_ms, self.limit, self.stem, *self.queues]
