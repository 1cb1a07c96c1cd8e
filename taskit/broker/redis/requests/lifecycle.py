"""Requests of the job lifecycle: enqueue, reserve, extend, settle, reclaim (the hot path:
each reply is read in one pass, with no object per job beyond its Job or Lease)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.records import LATEST, build_job
from taskit.broker.redis.replies import job_from, leased
from taskit.broker.redis.requests.request import BATCH, DeadElsewhere, Leased, Request
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg
from taskit.broker.redis.workflows import node_args
from taskit.errors import CorruptJobError
from taskit.job import Job, LeaseState, kept_job

__all__ = ["Enqueue", "EnqueuePlain", "Extend", "Reclaim", "Reserve", "Settle"]

# The keys of each queue a script takes, in the order of its header.
ENQUEUE_KINDS = ("fifo", "ranked", "delayed", "wake", "dead", "groups", "turns", "groupof")
PLAIN_KINDS = ("fifo", "wake", "dead", "groupof")
RECLAIM_KINDS = ("leases", "dead", "fifo", "ranked", "delayed", "groups", "groupof")
RESERVE_KINDS = ("fifo", "ranked", "delayed", "leases", "dead", "wake", "groups", "turns",
                 "groupof")  # fmt: skip
SETTLE_KINDS = ("fifo", "ranked", "delayed", "leases", "dead", "totals", "wake", "groups",
                "turns", "groupof", "completed", "failed", "cancelled")  # fmt: skip


# -- the job lifecycle -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Enqueue(Request[list[Job | str] | DeadElsewhere]):
    """``jobs`` as sent (their ids, queues, priorities, ``scheduled_at`` and ``dedup``),
    ``forms`` what each is stored as (``job.stored_form``: the job, fresh, and its encoded spec),
    ``delays_ms``, and the queue where each one's dead letter (if any) may be (``dead_in``: its
    own queue until an answer says otherwise); ``ttl_ms`` the broker's result TTL (a workflow
    whose last node ends in this call expires after it). A batch of plain jobs (``plain``)
    goes as ``EnqueuePlain`` instead."""

    script: ClassVar[ScriptName] = "enqueue"
    jobs: Sequence[Job]
    forms: Sequence[tuple[Job, bytes]]
    delays_ms: Sequence[int]
    dead_in: Sequence[str]
    ttl_ms: int = 0

    @staticmethod
    def plain(jobs: Sequence[Job], delays_ms: Sequence[int]) -> bool:
        """Whether every job is plain: priority 0, no delay, no ``scheduled_at``, no group, no
        dedup window, no workflow or dependency (what ``EnqueuePlain`` can store)."""
        for job, delay_ms in zip(jobs, delays_ms, strict=True):
            if (
                delay_ms
                or job.priority
                or job.scheduled_at is not None
                or job.group is not None
                or job.dedup is not None
                or job.workflow is not None
                or job.after is not None
            ):
                return False
        return True

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
        keys += [k.progress, k.dedup, k.dedup_until, k.wf_of, k.wf_deferred]
        return keys

    def args(self) -> list[Arg]:
        queues = self._queues()
        windows: list[Arg] = []  # the dedup section, after every job's own
        for i, job in enumerate(self.jobs, 1):
            if job.dedup is not None:
                d = job.dedup
                windows += [i, f"{d.mode[0]} {math.ceil(d.window * 1000)}", d.key]
        nodes: list[Arg] = []  # the workflow section, between the jobs and the dedup one
        for i, job in enumerate(self.jobs, 1):
            if job.workflow is not None:
                own = None if job.result_ttl is None else _ms(job.result_ttl)
                nodes += [i, job.workflow, *node_args(job, own)]
        head: Arg = f"{len(queues)} {len(windows) // 3}" if windows else len(queues)
        if nodes:
            head = f"{len(queues)} {len(windows) // 3} {len(nodes) // 4} {self.ttl_ms}"
        args: list[Arg] = [head, *queues]
        for job, (_, spec), delay_ms, dead in zip(
            self.jobs, self.forms, self.delays_ms, self.dead_in, strict=True
        ):
            at = job.scheduled_at.timestamp() if job.scheduled_at is not None else None
            at_ms = -1 if at is None else math.ceil(at * 1000)
            meta = f"{queues[job.queue]} {queues[dead]} {-job.priority} {delay_ms} {at_ms}"
            if job.group is not None:
                meta += f" {job.group}"
            args += [job.id, spec, meta, "" if at is None else repr(at)]
        return args + nodes + windows

    def answer(self, reply: Any) -> list[Job | str] | DeadElsewhere:
        """The stored jobs (each form's job; or, as a ``KeptJob``, an unfinished job of the same
        id kept as it was, or the job a dedup window kept; or the id of a job a dedup window
        kept that has finished, for the caller to read), or ``DeadElsewhere``;
        ``CorruptJobError`` when a job of a sent id has an unreadable record or a dead-letter
        queue name that is not UTF-8 (nothing was written)."""
        if reply[0] == b"ok":
            return [
                _stored(job, spec, reply[1 + 5 * i : 6 + 5 * i])
                for i, (job, spec) in enumerate(self.forms)
            ]
        i = int(reply[1]) - 1
        if reply[0] == b"parent":  # nothing was written
            parent, why = reply[2].decode(errors="replace"), reply[3].decode(errors="replace")
            raise ValueError(f"job {self.jobs[i].id!r} waits for job {parent!r}, which {why}")
        if reply[0] == b"unreadable":  # nothing was written: the record is not replaced unseen
            field, _, detail = reply[2].decode(errors="replace").partition(" ")
            raise CorruptJobError(
                self.jobs[i].id, field.rstrip(":"), f"{detail}; nothing was enqueued"
            )
        try:
            return DeadElsewhere(i, reply[2].decode())  # 'moved': a dead letter elsewhere
        except UnicodeDecodeError:  # as get and cancel read its state: unreadable
            raise CorruptJobError(
                self.jobs[i].id, "queue", f"is not UTF-8: {reply[2]!r}; nothing was enqueued"
            ) from None


@dataclass(frozen=True, slots=True)
class EnqueuePlain(Enqueue):
    """``Enqueue`` of a batch of plain jobs (``Enqueue.plain``; ``delays_ms`` all 0, ``ttl_ms``
    unused) by a script that takes only the keys and arguments such jobs need
    (``lua/enqueue-plain-n.lua``); the same answer."""

    script: ClassVar[ScriptName] = "enqueue-plain"

    def keys(self, k: Keys) -> list[str]:
        jobs = self.jobs
        if len(jobs) == 1 and self.dead_in[0] == jobs[0].queue:  # the common call
            job = jobs[0]
            return [k.jobs, k.err, k.progress, k.queues, *k.of(job.queue, PLAIN_KINDS),
                    k.done(job.id)]  # fmt: skip
        keys = [k.jobs, k.err, k.progress, k.queues]
        for queue in self._queues():
            keys += k.of(queue, PLAIN_KINDS)
        return keys + [k.done(job.id) for job in jobs]

    def args(self) -> list[Arg]:
        """With one queue, each job's id and spec; with more, also its queue's and its dead
        letter's queue's numbers."""
        jobs, forms = self.jobs, self.forms
        if len(jobs) == 1 and self.dead_in[0] == jobs[0].queue:  # the common call
            return [1, jobs[0].queue, jobs[0].id, forms[0][1]]
        queues = self._queues()
        args: list[Arg] = [len(queues), *queues]
        if len(queues) == 1:
            for job, (_, spec) in zip(jobs, forms, strict=True):
                args += [job.id, spec]
            return args
        for job, (_, spec), dead in zip(jobs, forms, self.dead_in, strict=True):
            args += [job.id, spec, f"{queues[job.queue]} {queues[dead]}"]
        return args


@dataclass(frozen=True, slots=True)
class Reserve(Request[Leased]):
    """Lease up to ``count`` jobs of ``queues`` for ``lease_ms``, under tokens made from
    ``stem`` (random, fresh per call)."""

    script: ClassVar[ScriptName] = "reserve"
    queues: Sequence[str]
    count: int
    lease_ms: int
    stem: str

    def keys(self, k: Keys) -> list[str]:
        keys = [k.jobs, k.err, k.seq, *k.limit_keys()]
        for q in self.queues:
            keys += k.of(q, RESERVE_KINDS)
        keys.append(k.paused)
        return keys

    def args(self) -> list[Arg]:
        return [self.count, self.lease_ms, self.stem, BATCH, *self.queues]

    def answer(self, reply: Any) -> Leased:
        """The leases (deadline: the server's now plus ``lease_ms``), the rows that do not
        decode (to dead-letter), and the wait until the earliest delayed job is due."""
        now_ms, wait_ms = int(reply[0]), int(reply[1])
        deadline = (now_ms + self.lease_ms) / 1000
        leases, bad = leased(self.queues, reply[2:], deadline, reclaimed=False)
        return Leased(leases, bad, None if wait_ms < 0 else wait_ms / 1000)


@dataclass(frozen=True, slots=True)
class Extend(Request[list[LeaseState]]):
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

    def answer(self, reply: Any) -> list[LeaseState]:
        """Each lease's state, in order."""
        return [LeaseState(state.decode()) for state in reply]


@dataclass(frozen=True, slots=True)
class Settle(Request[tuple[list[bool], list[str]]]):
    """Settle each outcome, given as (job id, random part of its token, kind, queue, delay in
    ms, encoded error or b"", encoded result or b""); a finished job's record is kept
    ``ttl_ms``, or its own TTL in ms where ``job_ttls_ms`` (one per outcome, or empty) gives
    one."""

    script: ClassVar[ScriptName] = "settle"
    ttl_ms: int
    outcomes: Sequence[tuple[str, str, str, str, int, bytes, bytes]]
    job_ttls_ms: Sequence[int | None] = ()

    def _queues(self) -> dict[str, int]:
        queues: dict[str, int] = {}
        for outcome in self.outcomes:
            queues.setdefault(outcome[3], len(queues) + 1)
        return queues

    def keys(self, k: Keys) -> list[str]:
        keys = [k.jobs, k.err, k.seq, *k.limit_keys()]
        for queue in self._queues():
            keys += k.of(queue, SETTLE_KINDS)
        keys += [k.done(outcome[0]) for outcome in self.outcomes]
        keys += [k.progress, k.wf_of, k.wf_deferred]
        return keys

    def args(self) -> list[Arg]:
        queues = self._queues()
        args: list[Arg] = [self.ttl_ms, len(queues)]
        ttls = self.job_ttls_ms or [None] * len(self.outcomes)
        for (job_id, rand, kind, queue, delay_ms, error, result), ttl in zip(
            self.outcomes, ttls, strict=True
        ):
            own = "" if ttl is None else f" {ttl}"
            args += [job_id, f"{rand} {kind} {queues[queue]} {delay_ms}{own}", error, result]
        return args

    def answer(self, reply: Any) -> tuple[list[bool], list[str]]:
        """Per outcome, in order: whether it applied (False: a stale token, nothing changed);
        and the queues whose held-back jobs the freed limit slots let out of line (to wake)."""
        n = len(self.outcomes)
        woken = [name.decode(errors="replace") for name in reply[n:]]
        return [ok == 1 for ok in reply[:n]], woken


@dataclass(frozen=True, slots=True)
class Reclaim(Request[Leased]):
    """Re-lease up to ``limit`` expired leases of ``queues`` for ``lease_ms``."""

    script: ClassVar[ScriptName] = "reclaim"
    queues: Sequence[str]
    lease_ms: int
    limit: int
    stem: str

    def keys(self, k: Keys) -> list[str]:
        keys = [k.jobs, k.err, k.seq, *k.limit_keys()]
        for q in self.queues:
            keys += k.of(q, RECLAIM_KINDS)
        return keys

    def args(self) -> list[Arg]:
        return [self.lease_ms, self.limit, self.stem, *self.queues]

    def answer(self, reply: Any) -> Leased:
        """The leases (deadline: the server's now plus ``lease_ms``), and the rows to settle at
        once: unreadable ones (dead-lettered), and jobs whose cancel was requested (cancelled;
        only a settle, given their ids, can name their done keys)."""
        deadline = (int(reply[0]) + self.lease_ms) / 1000
        leases, now = leased(self.queues, reply[1:], deadline, reclaimed=True)
        return Leased(leases, now)


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds, as ``base.ms`` rounds them (0 for none)."""
    return math.ceil(min(seconds, LATEST) * 1000) if seconds > 0 else 0


def _stored(job: Job, spec: bytes, row: Sequence[Any]) -> Job | str:
    """One job of enqueue's 'ok' reply: the stored ``job`` (``spec`` its encoding), or the job
    kept in its place (its id's, or a dedup window's; only the id of one that has finished)."""
    kept, old_spec, state, err, res = row
    if isinstance(kept, bytes):  # a dedup window kept another job
        if not state:
            return kept.decode()
        return kept_job(job_from(kept.decode(), old_spec, state, err, res))
    if kept:
        return kept_job(job_from(job.id, old_spec, state, err, res))
    if state.startswith(b"pending|"):
        return job  # stored as it was sent: pending, nothing else set
    return build_job(job.id, spec, state, err, b"")  # err: a node ended by its parent's end
