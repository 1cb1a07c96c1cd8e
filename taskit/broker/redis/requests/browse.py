"""Requests of browsing (``taskit.broker.browse``): a page of one structure of a listing, the
records of finished jobs, counts, promote, forget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from taskit.broker.checks import corrupt_job
from taskit.broker.redis.keys import Keys
from taskit.broker.redis.replies import dead_letter, job_from
from taskit.broker.redis.requests.request import Moved, Request
from taskit.broker.redis.scripts import ScriptName
from taskit.broker.redis.transport import Arg
from taskit.errors import CorruptJobError
from taskit.job import Job

__all__ = [
    "BrowseDone",
    "BrowseLex",
    "BrowseList",
    "BrowseScan",
    "BrowseZset",
    "CountsRead",
    "Forget",
    "Locate",
    "Page",
    "Promote",
    "Row",
]

# The keys of each queue a script takes, in the order of its header.
PROMOTE_KINDS = ("delayed", "fifo", "ranked", "groups", "turns", "groupof", "wake")
FORGET_KINDS = ("dead", "groupof", "completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Row:
    """One job of a page at its position (``a``, ``b``: where a walk resumes after it); ``job``
    None in 'ids' mode (finished jobs: their records come from ``BrowseDone``)."""

    a: str
    b: str
    job_id: str
    job: Job | None


@dataclass(frozen=True, slots=True)
class Page:
    """A browse script's answer (see ``lua/_browse.lua``): how many entries it examined, the
    position of the last one, whether the structure goes on past it, and its rows."""

    examined: int
    a: str
    b: str
    more: bool
    rows: list[Row]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="surrogateescape")
    return str(value)


class _Browse(Request[Page]):
    """A page of one structure: the answer is the same for every browse script."""

    __slots__ = ()
    queue: str

    def answer(self, reply: Any) -> Page:
        rows = [
            Row(_text(a), _text(b), _text(raw_id), _row_job(self.queue, raw_id, *rest))
            for a, b, raw_id, *rest in (reply[i : i + 7] for i in range(4, len(reply), 7))
        ]
        return Page(int(reply[0]), _text(reply[1]), _text(reply[2]), bool(int(reply[3])), rows)


def _row_job(
    queue: str, raw_id: bytes, spec: bytes, state: bytes, err: bytes, prog: bytes
) -> Job | None:
    """The Job of a live row; a stand-in naming the problem for an unreadable one (a listing
    shows every job, never fails on one); None for an id row."""
    if not spec and not state:
        return None
    if not state:
        return dead_letter(queue, raw_id, spec, state, err)
    job_id = raw_id.decode(errors="backslashreplace")
    try:
        return job_from(job_id, spec, state, err, b"", prog)
    except CorruptJobError as exc:
        return corrupt_job(job_id, queue, str(exc))


@dataclass(frozen=True, slots=True)
class BrowseZset(_Browse):
    """A page of sorted set ``key`` of ``queue`` by (score, member) from (``score``,
    ``member``), exclusive; see ``lua/browse-zset-4.lua`` for ``order``, ``part``, ``status``
    and ``mode``; ``keep_ms``: walk only members scored after now minus that."""

    script: ClassVar[ScriptName] = "browse-zset"
    queue: str
    key: str
    order: str
    part: str
    score: str
    member: str
    n: int
    budget: int
    status: str
    mode: str
    keep_ms: int | None = None

    def keys(self, k: Keys) -> list[str]:
        return [self.key, k.jobs, k.err, k.progress]

    def args(self) -> list[Arg]:
        keep = "" if self.keep_ms is None else self.keep_ms
        return [self.order, self.part, self.score, self.member, self.n, self.budget,
                self.status, self.mode, keep]  # fmt: skip


@dataclass(frozen=True, slots=True)
class BrowseList(_Browse):
    """A page of ``queue``'s FIFO list after id ``last`` ('' from the head)."""

    script: ClassVar[ScriptName] = "browse-list"
    queue: str
    last: str
    n: int
    budget: int

    def keys(self, k: Keys) -> list[str]:
        return [k.fifo(self.queue), k.jobs, k.err, k.progress]

    def args(self) -> list[Arg]:
        return [self.last, self.n, self.budget]


@dataclass(frozen=True, slots=True)
class BrowseLex(_Browse):
    """A page of all-zero-score set ``key`` between ``low`` and ``high`` (ZRANGEBYLEX forms)
    after member ``last``, keeping jobs of ``status`` (and of ``queue`` when ``of_queue``)."""

    script: ClassVar[ScriptName] = "browse-lex"
    queue: str
    key: str
    low: str
    high: str
    last: str
    n: int
    budget: int
    of_queue: bool
    status: str

    def keys(self, k: Keys) -> list[str]:
        return [self.key, k.jobs, k.err, k.progress]

    def args(self) -> list[Arg]:
        return [self.low, self.high, self.last, self.n, self.budget,
                self.queue if self.of_queue else "", self.status]  # fmt: skip


@dataclass(frozen=True, slots=True)
class BrowseScan(_Browse):
    """A page of ``queue``'s DEFERRED jobs: an HSCAN of the workflow node hash from batch
    ``cursor``, ``skip`` entries of it examined already."""

    script: ClassVar[ScriptName] = "browse-scan"
    queue: str
    cursor: str
    skip: int
    n: int
    budget: int

    def keys(self, k: Keys) -> list[str]:
        return [k.wf_of, k.jobs, k.err, k.progress]

    def args(self) -> list[Arg]:
        return [self.cursor, self.skip, self.n, self.budget, self.queue]


@dataclass(frozen=True, slots=True)
class BrowseDone(Request[list[Job | None]]):
    """The records of finished jobs ``job_ids`` listed from index ``kind`` (completed, failed,
    cancelled) of ``queue``; None for each no longer listed."""

    script: ClassVar[ScriptName] = "browse-done"
    queue: str
    kind: str
    job_ids: Sequence[str]

    def keys(self, k: Keys) -> list[str]:
        return [k.queue(self.queue, self.kind), *(k.done(i) for i in self.job_ids)]

    def args(self) -> list[Arg]:
        return [self.kind, *self.job_ids]

    def answer(self, reply: Any) -> list[Job | None]:
        found: list[Job | None] = []
        for job_id, i in zip(self.job_ids, range(0, len(reply), 5), strict=True):
            spec, state, err, res, prog = reply[i : i + 5]
            if not state:
                found.append(None)
                continue
            try:
                found.append(job_from(job_id, spec, state, err, res, prog))
            except CorruptJobError as exc:
                found.append(corrupt_job(job_id, self.queue, str(exc)))
        return found


@dataclass(frozen=True, slots=True)
class CountsRead(Request[list[dict[bytes, int]]]):
    """The counts hashes of ``minutes`` (epoch seconds, multiples of 60)."""

    script: ClassVar[ScriptName] = "counts"
    minutes: Sequence[int]

    def keys(self, k: Keys) -> list[str]:
        return [k.counts(minute) for minute in self.minutes]

    def args(self) -> list[Arg]:
        return []

    def answer(self, reply: Any) -> list[dict[bytes, int]]:
        """Per minute: field -> count (a value that is not an integer, damaged data, reads 0)."""
        out: list[dict[bytes, int]] = []
        i = 0
        for _ in self.minutes:
            n = int(reply[i])
            pairs = reply[i + 1 : i + 1 + 2 * n]
            out.append({bytes(f): _int(v) for f, v in zip(pairs[::2], pairs[1::2], strict=True)})
            i += 1 + 2 * n
        return out


def _int(value: Any) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class Promote(Request[bool | Moved]):
    script: ClassVar[ScriptName] = "promote"
    job_id: str
    queue: str

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, k.seq, *k.of(self.queue, PROMOTE_KINDS)]

    def args(self) -> list[Arg]:
        return [self.job_id, self.queue]

    def answer(self, reply: Any) -> bool | Moved:
        """Whether the job was promoted, or the queue it is really in (``Moved``: ask again
        there); ``CorruptJobError`` for a record that is unreadable."""
        if isinstance(reply, list):
            field, _, detail = reply[1].decode(errors="replace").partition(" ")
            raise CorruptJobError(self.job_id, field, detail)
        if isinstance(reply, bytes):
            return Moved(reply.decode())
        return bool(reply)


@dataclass(frozen=True, slots=True)
class Locate(Request[list[str]]):
    """The queue of each of ``job_ids`` that is a dead letter or finished ('' otherwise)."""

    script: ClassVar[ScriptName] = "locate"
    job_ids: Sequence[str]

    def keys(self, k: Keys) -> list[str]:
        return [k.jobs, *(k.done(i) for i in self.job_ids)]

    def args(self) -> list[Arg]:
        return list(self.job_ids)

    def answer(self, reply: Any) -> list[str]:
        return [_text(q) for q in reply]


@dataclass(frozen=True, slots=True)
class Forget(Request[int]):
    """Delete ``found`` (id, queue) dead letters and finished records; how many were."""

    script: ClassVar[ScriptName] = "forget"
    found: Sequence[tuple[str, str]]

    def _queues(self) -> dict[str, int]:
        queues: dict[str, int] = {}
        for _, queue in self.found:
            queues.setdefault(queue, len(queues) + 1)
        return queues

    def keys(self, k: Keys) -> list[str]:
        keys = [k.jobs, k.err, k.progress]
        for queue in self._queues():
            keys += k.of(queue, FORGET_KINDS)
        return keys + [k.done(job_id) for job_id, _ in self.found]

    def args(self) -> list[Arg]:
        queues = self._queues()
        args: list[Arg] = [len(queues), *queues]
        for job_id, queue in self.found:
            args += [job_id, queues[queue]]
        return args

    def answer(self, reply: Any) -> int:
        return int(reply)
