"""Requests to read, administer and coordinate: get, cancel, stats, dead letters, requeue,
purge; announce, withdraw, live."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.records import parse_state, split_record
from taskit.broker.redis.replies import dead_letter, job_from
from taskit.broker.redis.requests.request import BATCH, Moved, Request
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg
from taskit.job import Job, QueueStats

__all__ = [
    "Announce",
    "Cancel",
    "DeadLetters",
    "Get",
    "Live",
    "Purge",
    "PurgeDead",
    "RequeueDead",
    "Stats",
    "Withdraw",
]

# The keys of each queue a script takes, in the order of its header.
CANCEL_KINDS = ("fifo", "ranked", "delayed", "leases", "totals")
REQUEUE_DEAD_KINDS = ("fifo", "ranked", "dead", "wake")
PURGE_KINDS = ("fifo", "ranked", "delayed")
STATS_KINDS = ("fifo", "ranked", "delayed", "leases", "dead", "totals")
#: A queue's fair-turn keys (see ``keys``), after the others where a script takes them.
FAIR_KINDS = ("groups", "turns", "groupof")
#: A queue's finished-job indexes (browsing), in the order scripts take them.
ENDED_KINDS = ("completed", "failed", "cancelled")

_STATS = ("queued", "scheduled", "running", "completed", "failed", "dead", "deferred")


# -- reading and admin -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Get(Request[Job | None]):
    script: ClassVar[ScriptName] = "get"
    job_id: str

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.err, k.done(self.job_id), k.progress]

    def args(self) -> list[Arg]:
        return [self.job_id]

    def answer(self, reply: Any) -> Job | None:
        """The job (a stand-in when only its spec does not decode), None when there is none;
        ``CorruptJobError`` naming the field when its record is unreadable."""
        if reply is None:
            return None
        spec, state, err, res, prog = reply
        if not state:  # the script could not split the record: say which part is wrong
            parse_state(split_record(spec, self.job_id)[0], self.job_id)
        return job_from(self.job_id, spec, state, err, res, prog)


@dataclass(frozen=True, slots=True)
class Cancel(Request[bool | Moved]):
    script: ClassVar[ScriptName] = "cancel"
    job_id: str
    queue: str
    ttl_ms: int
    broker_ttl_ms: int

    def keys(self, k: Keys) -> list[str]:
        return [
            k.jobs, k.err, k.done(self.job_id), *k.of(self.queue, CANCEL_KINDS), k.progress,
            *k.of(self.queue, FAIR_KINDS), *k.limit_keys(), k.wf_of, k.wf_deferred, k.seq,
            *k.of(self.queue, ENDED_KINDS),
        ]  # fmt: skip

    def args(self) -> list[Arg]:
        return [self.job_id, self.queue, self.ttl_ms, self.broker_ttl_ms]

    def answer(self, reply: Any) -> bool | Moved:
        """Whether the job was cancelled (or its cancel requested), or the queue it is really
        in (``Moved``: ask again there)."""
        if isinstance(reply, bytes):
            return Moved(reply.decode())
        return bool(reply)


@dataclass(frozen=True, slots=True)
class Stats(Request[dict[str, QueueStats]]):
    script: ClassVar[ScriptName] = "stats"
    queues: Sequence[str]

    def keys(self, k: Keys) -> list[str]:
        # held-back jobs count as queued; DEFERRED ones are counted apart
        keys = [k.jobs, k.seq, k.err, k.limit_keys()[-1], k.wf_deferred]
        for q in self.queues:
            keys += k.of(q, STATS_KINDS + FAIR_KINDS)
        return keys

    def args(self) -> list[Arg]:
        return [BATCH, *self.queues]

    def answer(self, reply: Any) -> dict[str, QueueStats]:
        """Each queue's counts."""
        return {
            q: QueueStats(
                **{n: int(v) for n, v in zip(_STATS, reply[7 * i : 7 * i + 7], strict=True)}
            )
            for i, q in enumerate(self.queues)
        }


@dataclass(frozen=True, slots=True)
class DeadLetters(Request[list[Job]]):
    script: ClassVar[ScriptName] = "dead-letters"
    queue: str
    offset: int
    limit: int

    def keys(self, k: Keys) -> list[str]:
        return [k.dead(self.queue), k.jobs, k.err]

    def args(self) -> list[Arg]:
        return [max(self.offset, 0), self.limit]

    def answer(self, reply: Any) -> list[Job]:
        """The page's dead letters; a stand-in naming the problem for each unreadable one."""
        return [dead_letter(self.queue, *reply[i : i + 4]) for i in range(0, len(reply), 4)]


@dataclass(frozen=True, slots=True)
class RequeueDead(Request[int]):
    """Requeue ``job_ids`` of ``queue``'s dead letters (at most ``BATCH``), or with None the
    oldest ``BATCH``."""

    script: ClassVar[ScriptName] = "requeue-dead"
    queue: str
    job_ids: Sequence[str] | None = None

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.seq, *k.of(self.queue, REQUEUE_DEAD_KINDS + FAIR_KINDS)]

    def args(self) -> list[Arg]:
        return [BATCH, *(self.job_ids or ())]

    def answer(self, reply: Any) -> int:
        """How many jobs it changed (fewer than ``BATCH``: the last batch)."""
        return int(reply)


@dataclass(frozen=True, slots=True)
class Purge(Request[int]):
    script: ClassVar[ScriptName] = "purge"
    queue: str
    ttl_ms: int

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.err, *k.of(self.queue, PURGE_KINDS), k.progress,
                *k.of(self.queue, FAIR_KINDS), *k.limit_keys(), k.wf_of, k.wf_deferred,
                k.seq]  # fmt: skip

    def args(self) -> list[Arg]:
        return [BATCH, self.queue, self.ttl_ms]

    def answer(self, reply: Any) -> int:
        """How many jobs it changed (fewer than ``BATCH``: the last batch)."""
        return int(reply)


@dataclass(frozen=True, slots=True)
class PurgeDead(Request[int]):
    script: ClassVar[ScriptName] = "purge-dead"
    queue: str

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.err, k.dead(self.queue), k.progress, k.queue(self.queue, "groupof")]

    def args(self) -> list[Arg]:
        return [BATCH]

    def answer(self, reply: Any) -> int:
        """How many jobs it changed (fewer than ``BATCH``: the last batch)."""
        return int(reply)


# -- coordination ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Announce(Request[None]):
    script: ClassVar[ScriptName] = "announce"
    name: str
    record: bytes
    ttl_ms: int

    def keys(self, k: Keys) -> list[str]:
        return [k.workers, k.beats]

    def args(self) -> list[Arg]:
        return [self.name, self.record, self.ttl_ms]

    def answer(self, reply: Any) -> None:
        """Nothing: the script always answers 1."""


@dataclass(frozen=True, slots=True)
class Withdraw(Request[bool]):
    script: ClassVar[ScriptName] = "withdraw"
    name: str

    def keys(self, k: Keys) -> list[str]:
        return [k.workers, k.beats]

    def args(self) -> list[Arg]:
        return [self.name]

    def answer(self, reply: Any) -> bool:
        """Whether the name was announced."""
        return bool(reply)


@dataclass(frozen=True, slots=True)
class Live(Request[dict[str, bytes]]):
    script: ClassVar[ScriptName] = "live"

    def keys(self, k: Keys) -> list[str]:
        return [k.workers, k.beats]

    def args(self) -> list[Arg]:
        return []

    def answer(self, reply: Any) -> dict[str, bytes]:
        """Each live name's record. A name is shown, never used as a key: one that is not
        UTF-8 is shown escaped."""
        return {
            reply[i].decode(errors="backslashreplace"): bytes(reply[i + 1])
            for i in range(0, len(reply), 2)
        }


@dataclass(frozen=True, slots=True)
class Shards(Request[int]):
    """The shard count check of a broker of ``mine`` shards that holds every shard of each
    count in ``covers`` (see ``watch``, Shards)."""

    script: ClassVar[ScriptName] = "shards"
    mine: int
    covers: tuple[int, ...]

    def keys(self, k: Keys) -> list[str]:
        return [k.shards]

    def args(self) -> list[Arg]:
        return [self.mine, *self.covers]

    def answer(self, reply: Any) -> int:
        """The count kept before the call (1: none)."""
        return int(reply)
