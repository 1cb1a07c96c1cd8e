"""Browsing on Redis (``taskit.broker.browse``): listings walked a page at a time by the
``browse-*`` scripts, per-minute counts, promote, forget and stream tails.

A listing is a row of phases, one structure each, walked in order (QUEUED: the ranked set's
higher priorities, the FIFO list, the group set, its lower priorities, then the jobs held back by
a limit: freed, then waiting in a line). A cursor names the phase and the position of the last
job dealt with in it; it is opaque to callers (url-safe base64 of JSON) and carries the queue
and listing it belongs to, so a cursor of another walk is refused. Filtering (``task``,
``text``) happens here, on the decoded jobs, with ``browse.matches``; a page's script calls
stop at ``limit`` matches, or at ``SCAN_BUDGET`` jobs examined when filtering. To know whether
anything follows the last job of a page, the walk looks for one more match and, found, resumes
at the last job returned.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from taskit.broker.browse import (
    COUNTS_KEPT,
    RUN_TIME_BOUNDS,
    SCAN_BUDGET,
    Counts,
    JobPage,
    Listing,
    check_page,
    matches,
)
from taskit.broker.redis.keys import Keys
from taskit.broker.redis.requests import Moved, Request
from taskit.broker.redis.requests.browse import (
    BrowseDone,
    BrowseLex,
    BrowseList,
    BrowseScan,
    BrowseZset,
    CountsRead,
    Forget,
    Locate,
    Page,
    Promote,
)
from taskit.broker.redis.streams import FIELD
from taskit.job import Job

__all__ = ["Browser"]

T = TypeVar("T")

#: Counts fields by their code (``lua/_counts.lua``).
_CODES = {b"e": "enqueued", b"c": "completed", b"f": "failed", b"r": "retried", b"d": "dead",
          b"x": "cancelled"}  # fmt: skip
#: Jobs located and forgotten per script call.
_FORGET_BATCH = 500


class Call(Protocol):
    def __call__(self, request: Request[T], /) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class _Phase:
    """One structure a listing walks: ``kind`` zset, list, lex or scan, and its options."""

    name: str
    kind: str
    order: str = "asc"
    part: str = "all"
    mode: str = "live"


_QUEUED = (
    _Phase("high", "zset", part="neg", mode="ranked"),
    _Phase("fifo", "list"),
    _Phase("groups", "lex"),
    _Phase("low", "zset", part="pos", mode="ranked"),
    _Phase("freed", "lex"),
    _Phase("waiting", "lex"),
)
_PHASES: dict[Listing, tuple[_Phase, ...]] = {
    Listing.QUEUED: _QUEUED,
    Listing.SCHEDULED: (_Phase("delayed", "zset"),),
    Listing.RETRYING: (_Phase("delayed", "zset"),),
    Listing.RUNNING: (_Phase("leases", "zset"),),
    Listing.DEFERRED: (_Phase("deferred", "scan"),),
    Listing.COMPLETED: (_Phase("completed", "zset", order="desc", mode="ids"),),
    Listing.FAILED: (_Phase("failed", "zset", order="desc", mode="ids"),),
    Listing.CANCELLED: (_Phase("cancelled", "zset", order="desc", mode="ids"),),
    Listing.DEAD: (_Phase("dead", "zset", order="desc"),),
}


@dataclass(slots=True)
class _Pos:
    """Where a walk is: phase number, and the position in it after which it resumes."""

    phase: int = 0
    a: str = ""
    b: str = ""


class Browser:
    """The browsing methods of one ``RedisBroker`` of result TTL ``ttl_ms``: ``call`` runs a
    request, ``execute`` one plain command (both guarded by the broker)."""

    def __init__(
        self, keys: Keys, ttl_ms: int, call: Call, execute: Callable[..., Awaitable[Any]]
    ) -> None:
        self._keys = keys
        self._ttl_ms = ttl_ms
        self._call = call
        self._execute = execute

    # -- listings -------------------------------------------------------------------------------
    async def list_jobs(
        self,
        queue: str,
        listing: Listing,
        cursor: str | None,
        limit: int,
        task: str | None,
        text: str | None,
    ) -> JobPage:
        check_page(limit, cursor)
        listing = Listing(listing)
        phases = _PHASES[listing]
        pos = _decode(cursor, queue, listing, len(phases)) if cursor is not None else _Pos()
        filtered = task is not None or text is not None
        jobs: list[Job] = []
        scanned = 0
        cut: _Pos | None = None  # where the page ends when one more job was found
        jobs_at = _Pos()  # the position of the last job of the page (its phase too)
        while cut is None and pos.phase < len(phases):
            if filtered and scanned >= SCAN_BUDGET:
                return JobPage(jobs, _encode(queue, listing, pos), scanned)
            budget = SCAN_BUDGET - scanned if filtered else SCAN_BUDGET
            phase = phases[pos.phase]
            page = await self._page(queue, listing, phase, pos, limit + 1 - len(jobs), budget)
            scanned += page.examined
            for row, job in await self._jobs(queue, phase, page):
                if job is None or not matches(job, task, text):
                    continue
                if len(jobs) == limit:  # one more: the page ends at the last job returned
                    cut = jobs_at
                    break
                jobs.append(job)
                jobs_at = _Pos(pos.phase, row.a, row.b)
            if cut is None:
                pos = _Pos(pos.phase, page.a, page.b) if page.more else _Pos(pos.phase + 1)
        if cut is not None:
            return JobPage(jobs, _encode(queue, listing, cut), scanned)
        return JobPage(jobs, None, scanned)

    async def _page(
        self, queue: str, listing: Listing, phase: _Phase, pos: _Pos, n: int, budget: int
    ) -> Page:
        k = self._keys
        if phase.kind == "list":
            return await self._call(BrowseList(queue, pos.b, n, budget))
        if phase.kind == "scan":
            return await self._call(BrowseScan(queue, pos.a or "0", int(pos.b or 0), n, budget))
        if phase.kind == "lex":
            key, low, high, of_queue = k.queue(queue, "groups"), "-", "+", False
            if phase.name == "freed":
                key, low, high = f"{k.limits}:freed", f"[{queue}\0", f"({queue}\1"
            elif phase.name == "waiting":
                key, of_queue = f"{k.limits}:waiting", True
            return await self._call(
                BrowseLex(queue, key, low, high, pos.b, n, budget, of_queue, "pending")
            )
        key = k.queue(queue, "ranked" if phase.mode == "ranked" else phase.name)
        status = "" if phase.mode == "ids" else listing.status.value
        return await self._call(
            BrowseZset(
                queue,
                key,
                phase.order,
                phase.part,
                pos.a,
                pos.b,
                n,
                budget,
                status,
                phase.mode,
                self._ttl_ms if phase.mode == "ids" else None,
            )
        )

    async def _jobs(self, queue: str, phase: _Phase, page: Page) -> list[tuple[Any, Job | None]]:
        """The page's rows with their jobs (finished ones read from their done keys)."""
        if phase.mode != "ids" or not page.rows:
            return [(row, row.job) for row in page.rows]
        ids = [row.job_id for row in page.rows]
        found = await self._call(BrowseDone(queue, phase.name, ids))
        return list(zip(page.rows, found, strict=True))

    # -- counts ---------------------------------------------------------------------------------
    async def counts(
        self, since: float, until: float | None, queues: Sequence[str] | None
    ) -> list[Counts]:
        for name, value in (("since", since), ("until", until)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"counts: {name} must be seconds since the epoch, got {value!r}")
        # The clocks of client and server may differ a little: with until None, read two
        # minutes past now (a minute not come yet has no hash).
        end = until if until is not None else time.time() + 120
        first = max(math.ceil(since / 60), math.ceil((time.time() - COUNTS_KEPT) / 60))
        minutes = [m * 60 for m in range(first, math.ceil(end / 60))]
        wanted = None if queues is None else set(queues)
        found: list[Counts] = []
        for start in range(0, len(minutes), 500):
            chunk = minutes[start : start + 500]
            read: list[dict[bytes, int]] = await self._call(CountsRead(chunk))
            for minute, fields in zip(chunk, read, strict=True):
                if until is not None and minute >= until:
                    continue
                found += _counts_of(minute, fields, wanted)
        return found

    # -- single jobs ----------------------------------------------------------------------------
    async def promote(self, job_id: str, queue: str | None) -> bool:
        """``queue``: where the job's record says it is (None: no live record)."""
        for _ in range(3):  # its queue changes only if it finishes and is enqueued anew
            if queue is None:
                return False
            answer = await self._call(Promote(job_id, queue))
            if not isinstance(answer, Moved):
                return answer
            queue = answer.queue
        return False  # pragma: no cover - a job re-created in another queue three times over

    async def forget(self, job_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(job_ids))
        for job_id in ids:
            if not isinstance(job_id, str):
                raise TypeError(f"forget: job ids must be strings, got {job_id!r}")
        total = 0
        for start in range(0, len(ids), _FORGET_BATCH):
            chunk = ids[start : start + _FORGET_BATCH]
            queues = await self._call(Locate(chunk))
            found = [(i, q) for i, q in zip(chunk, queues, strict=True) if q]
            if found:
                total += await self._call(Forget(found))
        return total

    # -- streams --------------------------------------------------------------------------------
    async def stream_tail(
        self, stream: str, after: str | None, count: int
    ) -> list[tuple[str, bytes]]:
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ValueError(f"stream_tail: count must be an int > 0, got {count!r}")
        key = self._keys.stream(stream)
        if after is None:
            raw = await self._execute("XREVRANGE", key, "+", "-", "COUNT", count)
            return _entries(raw)[::-1]
        return _entries(await self._execute("XRANGE", key, f"({after}", "+", "COUNT", count))


def _counts_of(minute: int, fields: dict[bytes, int], wanted: set[str] | None) -> list[Counts]:
    """The Counts of one minute's hash, one per queue (sorted), of the queues ``wanted``."""
    per: dict[str, dict[str, Any]] = {}
    for field, n in fields.items():
        raw_queue, sep, code = field.rpartition(b"\0")
        if not sep or not n:
            continue
        queue = raw_queue.decode(errors="replace")
        if wanted is not None and queue not in wanted:
            continue
        got = per.setdefault(queue, {"runs": [0] * (len(RUN_TIME_BOUNDS) + 1)})
        if code in _CODES:
            got[_CODES[code]] = got.get(_CODES[code], 0) + n
        elif code[:1] == b"t" and code[1:].isdigit() and int(code[1:]) < len(got["runs"]):
            got["runs"][int(code[1:])] += n
    out = []
    for queue in sorted(per):
        values = per[queue]
        values["runs"] = tuple(values["runs"])
        out.append(Counts(minute=minute, queue=queue, **values))
    return out


def _entries(raw: Any) -> list[tuple[str, bytes]]:
    """``[[id, [field, value, ...]], ...]`` as ``(id, entry)``; entries without the field are
    left out."""
    out = []
    for entry_id, fields in raw or ():
        if not isinstance(fields, dict):
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        values = fields
        if FIELD in values:
            text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            out.append((text, bytes(values[FIELD])))
    return out


def _encode(queue: str, listing: Listing, pos: _Pos) -> str:
    raw = json.dumps([1, queue, listing.value, pos.phase, pos.a, pos.b], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogateescape")).decode().rstrip("=")


def _decode(cursor: str, queue: str, listing: Listing, phases: int) -> _Pos:
    """The position a cursor names; ``ValueError`` naming it when this broker did not make it
    for this queue and listing."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, of_queue, of_listing, phase, a, b = json.loads(
            raw.decode("utf-8", "surrogateescape")
        )
    except (binascii.Error, ValueError, TypeError, UnicodeError):
        raise ValueError(f"list_jobs: not a cursor a page returned: {cursor!r}") from None
    if (version, of_queue, of_listing) != (1, queue, listing.value) or not (
        isinstance(phase, int) and 0 <= phase < phases and isinstance(a, str) and isinstance(b, str)
    ):
        raise ValueError(
            f"list_jobs: cursor {cursor!r} was not made for queue {queue!r}, listing "
            f"{listing.value!r}"
        )
    return _Pos(phase, a, b)
