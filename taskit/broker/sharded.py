"""ShardedBroker: one broker made of N complete brokers (shards), so that one App's throughput
grows with the Redis masters it runs on.

Each shard is an ordinary broker on its own key prefix (on Redis a hash tag of its own: one
Cluster slot, on its own master when the shard count matches the masters; see
``taskit.broker.redis.shards``). A job lives in one shard for its whole life
(``taskit.broker.placement``), and every step on it is that shard's own atomic step, so each
promise of ``Broker`` holds **within a shard** exactly as on one broker. What this class adds is
the routing, and these rules across shards:

* **Jobs by id.** ``get``, ``cancel`` and ``promote`` ask the shard of the id first, then the
  others (a job placed in the home shard by its limits, dedup window or workflow). A unique
  id (a second enqueue of an unfinished job's id) is kept in place within a shard: the same id
  enqueued once with limits (home) and once without (its own shard) is two jobs.
* **Leases.** A token this broker hands out names its shard (``"<k>/<token>"``); ``extend``,
  ``settle`` and ``set_progress`` go to that shard. A token without a valid shard is stale.
* **Enqueue** checks every job first (encoding, groups, workflow fields: nothing is stored when
  one is bad), then stores each shard's jobs in one step of that shard: the parts holding
  workflow jobs first, one after another (a shard refuses a workflow job whose parent it does
  not hold, and then none of the batch's plain jobs is stored yet), then the others
  concurrently. All-or-none holds per shard: when a shard fails (unreachable), or refuses a
  workflow's part after another workflow's part of the batch was stored on another shard, the
  parts stored stay. An enqueue retried with the same ids stores nothing twice.
* **Reserve** takes from the shards in rotation (a fresh start each call), without waiting,
  until it has ``count`` jobs; with none ready anywhere it waits on every shard at once and
  returns the first shard's jobs (what another shard leased in that same moment is kept up to
  ``count``, the rest handed back at once). Priority, FIFO, fair turns and the order of
  ``queues`` hold among the jobs of one shard; across shards the rotation decides.
* **Counting and listing.** ``stats`` and ``counts`` add the shards up. ``list_jobs`` walks
  shard 0, then 1, and so on: its orders hold within each shard's part of the walk, and a walk
  lists each job that stays in its state exactly once, as on one broker. A page that fills up
  at the end of a shard's part has a cursor (the next shards are not asked ahead), so a walk
  may end with an empty page. A filtered page examines at most ``SCAN_BUDGET`` jobs, as on one
  broker: it goes on to the next shard's part only while it has examined none.
  ``dead_letters`` lists shard by shard the same way.
* **Fan-out.** ``requeue_dead``, ``purge``, ``purge_dead``, ``forget`` and ``reclaim`` act on
  every shard, each shard in one step of its own. ``pause_queue`` and ``resume_queue`` write
  every shard (the home shard first; each shard's reserve reads its own copy), so a pause is in
  force everywhere once it returns.
* **Workflows.** A workflow lives in one shard (the home shard when new, else where the jobs it
  adopts are stored), with the plain jobs of the batch its jobs wait for, so a job can wait
  only for jobs of its workflow's shard: waiting for stored jobs of other shards is a
  ``ValueError`` naming them, as is a job with limits or a dedup window joining a workflow
  outside the home shard.
* **The home shard** keeps limits, dedup windows, claims, once keys, announcements, streams and
  the paused set that ``paused_queues`` reads; workflows are looked up there first.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

import anyio
import msgspec

from taskit._urls import MAX_SHARDS
from taskit.broker._fanout import add_counts, add_stats, first, gather
from taskit.broker._shard_batch import batch_targets, by_shard, check_batch, pick
from taskit.broker._shard_names import cursor_of, listing_mark, named, split
from taskit.broker.base import Broker, BrokerOptions, OnceState
from taskit.broker.browse import Counts, JobPage, Listing, check_page
from taskit.broker.placement import HOME, place, shard_of
from taskit.config import Settings
from taskit.errors import ConfigurationError
from taskit.job import (
    Job,
    JobResult,
    Lease,
    LeaseState,
    Outcome,
    ProgressUpdate,
    QueueStats,
)
from taskit.limits import LimitSpec, LimitUsage
from taskit.workflow import WorkflowState

__all__ = ["ShardedBroker", "shard_count"]

T = TypeVar("T")
H = TypeVar("H", Lease, Outcome, ProgressUpdate)


class ShardedBroker(Broker):
    """The Broker contract over N shards (see the module docstring for what holds across them).

    ``build(settings)`` makes the shards for the resolved settings: at construction (with
    ``options.current``) and again when ``configure`` resolves different ones (an App's
    settings, taken before any call). ``ConfigurationError`` unless it makes 2 to
    ``MAX_SHARDS`` brokers, none of them sharded itself.
    """

    def __init__(
        self, options: BrokerOptions, build: Callable[[Settings], Sequence[Broker]]
    ) -> None:
        self._options = options
        self._build = build
        self._settings = options.current
        self._shards = self._made(options.current)
        self._replaced: list[Broker] = []
        self._turn = itertools.count()

    def _made(self, settings: Settings) -> tuple[Broker, ...]:
        shards = tuple(self._build(settings))
        if not 2 <= len(shards) <= MAX_SHARDS:
            raise ConfigurationError(
                f"a sharded broker needs 2 to {MAX_SHARDS} shards, got {len(shards)}"
            )
        if any(isinstance(shard, ShardedBroker) for shard in shards):
            raise ConfigurationError("a shard of a sharded broker cannot be sharded itself")
        return shards

    def configure(self, settings: Settings) -> None:
        merged = self._options.adopt(settings)
        if merged != self._settings:
            self._replaced.extend(self._shards)
            self._shards, self._settings = self._made(merged), merged

    # ``Broker`` declares these two per class; a sharded broker has its shards' (any kind).
    @property
    def in_process(self) -> bool:  # type: ignore[override]
        """Whether its shards live in this process only (memory brokers)."""
        return any(shard.in_process for shard in self._shards)

    @property
    def asyncio_only(self) -> bool:  # type: ignore[override]
        """Whether a shard runs on asyncio only (Redis brokers)."""
        return any(shard.asyncio_only for shard in self._shards)

    @property
    def shards(self) -> tuple[Broker, ...]:
        """The shards, home (``placement.HOME``) first."""
        return self._shards

    @property
    def count(self) -> int:
        """How many shards."""
        return len(self._shards)

    @property
    def _home(self) -> Broker:
        return self._shards[HOME]

    # -- producing -------------------------------------------------------------------------
    async def enqueue(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job]:
        check_batch(jobs, delays)
        return await self._store(jobs, delays, await batch_targets(self._shards, jobs))

    def enqueue_blocking(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job] | None:
        """``enqueue`` blocking this thread, shard after shard; None (use ``enqueue``) for a
        batch with workflow jobs, whose shard is looked up, or when a shard has no such path."""
        check_batch(jobs, delays)
        if any(job.workflow is not None for job in jobs):
            return None
        targets = [place(job, self.count) for job in jobs]
        out: list[Job | None] = [None] * len(jobs)
        for k, indexes in by_shard(targets).items():
            part = [jobs[i] for i in indexes]
            stored = self._shards[k].enqueue_blocking(part, delays=pick(delays, indexes))
            if stored is None:
                return None
            for i, job in zip(indexes, stored, strict=True):
                out[i] = job
        return out  # type: ignore[return-value]  # every index is in one part

    async def _store(
        self, jobs: Sequence[Job], delays: Sequence[float] | None, targets: list[int]
    ) -> list[Job]:
        """Each shard's part stored by one enqueue of that shard. The parts holding workflow
        jobs go first, one after another, then the others concurrently: a shard refuses a
        workflow job for what only it knows (a parent unknown there, or a node of another
        workflow), and then none of the batch's plain parts is stored yet."""
        parts = by_shard(targets)
        out: list[Job | None] = [None] * len(jobs)

        async def store(k: int) -> None:
            ix = parts[k]
            got = await self._shards[k].enqueue([jobs[i] for i in ix], delays=pick(delays, ix))
            for i, job in zip(ix, got, strict=True):
                out[i] = job

        flows = [k for k, ix in parts.items() if any(jobs[i].workflow is not None for i in ix)]
        for k in flows:
            await store(k)
        await gather([partial(store, k) for k in parts if k not in flows])
        return out  # type: ignore[return-value]  # every index is in one part

    # -- consuming -------------------------------------------------------------------------
    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        got: list[Lease] = []
        errors: list[Exception] = []
        try:
            start = next(self._turn) % self.count
            for step in range(self.count):
                k = (start + step) % self.count
                try:
                    leases = await self._shards[k].reserve(
                        queues, count=count - len(got), lease=lease, timeout=0
                    )
                except Exception as exc:
                    errors.append(exc)
                    continue
                got.extend(named(k, leases))
                if len(got) >= count:
                    break
            if not got and errors:
                raise errors[0]
            if not got and timeout > 0:
                got = await self._wait_all(queues, count, lease, timeout)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._release(got)
            raise
        return await self._handed_over(got)

    async def _wait_all(
        self, queues: Sequence[str], count: int, lease: float, timeout: float
    ) -> list[Lease]:
        """Every shard's reserve waiting at once: the first to lease jobs ends the others'
        waits (their reserves hand back what they took as they are cancelled); leases that came
        in the same moment are kept up to ``count`` and the rest handed back."""
        got: list[Lease] = []
        errors: list[Exception] = []

        async def wait(k: int, scope: anyio.CancelScope) -> None:
            try:
                leases = await self._shards[k].reserve(
                    queues, count=count, lease=lease, timeout=timeout
                )
            except Exception as exc:
                errors.append(exc)
                return
            got.extend(named(k, leases))
            if leases:
                scope.cancel()

        try:
            async with anyio.create_task_group() as group:
                for k in range(self.count):
                    group.start_soon(wait, k, group.cancel_scope)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(got)
            raise
        if not got and errors:
            raise errors[0]
        return await self._kept(got, count)

    async def _kept(self, got: list[Lease], count: int) -> list[Lease]:
        """The first ``count`` of ``got``; the rest handed back at once (shielded)."""
        if len(got) > count:
            with anyio.CancelScope(shield=True):
                await self._release(got[count:])
        return got[:count]

    async def extend(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        answers = await self._by_token(
            leases, lambda k, part: self._shards[k].extend(part, lease=lease)
        )
        return [LeaseState.LOST if a is None else a for a in answers]

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        answers = await self._by_token(outcomes, lambda k, part: self._shards[k].settle(part))
        return [bool(a) for a in answers]

    async def set_progress(self, updates: Sequence[ProgressUpdate]) -> list[bool]:
        answers = await self._by_token(updates, lambda k, part: self._shards[k].set_progress(part))
        return [bool(a) for a in answers]

    async def _by_token(
        self, held: Sequence[H], call: Callable[[int, list[H]], Awaitable[list[T]]]
    ) -> list[T | None]:
        """``call`` per shard with its part of ``held`` (their tokens made the shard's own
        again); None for one whose token names no shard of this broker (stale)."""
        parts: dict[int, list[int]] = {}
        inner: list[H | None] = []
        for i, one in enumerate(held):
            parsed = split(one.token, self.count)
            if parsed is None:
                inner.append(None)
                continue
            k, token = parsed
            inner.append(msgspec.structs.replace(one, token=token))
            parts.setdefault(k, []).append(i)
        answers: list[T | None] = [None] * len(held)
        got = await gather(
            [
                partial(call, k, [inner[i] for i in ix])  # type: ignore[misc]
                for k, ix in parts.items()
            ]
        )
        for indexes, each in zip(parts.values(), got, strict=True):
            for i, answer in zip(indexes, each, strict=True):
                answers[i] = answer
        return answers

    async def reclaim(
        self, queues: Sequence[str], *, lease: float, limit: int = 100
    ) -> list[Lease]:
        got: list[Lease] = []
        for k, shard in enumerate(self._shards):
            if len(got) >= limit:
                break
            got.extend(named(k, await shard.reclaim(queues, lease=lease, limit=limit - len(got))))
        return got

    # -- jobs by id ------------------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        return await self._by_id(job_id, lambda shard: shard.get(job_id))

    async def cancel(self, job_id: str) -> bool:
        return bool(await self._by_id(job_id, lambda shard: shard.cancel(job_id)))

    async def promote(self, job_id: str) -> bool:
        return bool(await self._by_id(job_id, lambda shard: shard.promote(job_id)))

    async def _by_id(self, job_id: str, call: Callable[[Broker], Awaitable[T | None]]) -> T | None:
        """``call``'s answer from the shard holding the job: its id's shard, else another."""
        if not isinstance(job_id, str):
            return await call(self._home)  # the shard's own error for a bad id
        found = await first(
            self.count, shard_of(job_id, self.count), lambda k: call(self._shards[k])
        )
        return None if found is None else found[1]

    # -- counting, listing, admin ----------------------------------------------------------
    async def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        return add_stats(await self._each(lambda shard: shard.stats(queues)))

    async def counts(
        self, since: float, until: float | None = None, queues: Sequence[str] | None = None
    ) -> list[Counts]:
        return add_counts(await self._each(lambda shard: shard.counts(since, until, queues)))

    async def list_jobs(
        self,
        queue: str,
        listing: Listing,
        *,
        cursor: str | None = None,
        limit: int = 50,
        task: str | None = None,
        text: str | None = None,
    ) -> JobPage:
        check_page(limit, cursor)
        mark = listing_mark(queue, listing)
        k, inner = (0, None) if cursor is None else cursor_of(cursor, self.count, mark)
        filtered = task is not None or text is not None
        jobs: list[Job] = []
        scanned = 0
        while True:
            page = await self._shards[k].list_jobs(
                queue, listing, cursor=inner, limit=limit - len(jobs), task=task, text=text
            )
            jobs.extend(page.jobs)
            scanned += page.scanned
            if page.cursor is not None:
                return JobPage(jobs, f"{k}:{mark}:{page.cursor}", scanned)
            k, inner = k + 1, None
            if k == self.count:
                return JobPage(jobs, None, scanned)
            # A filtered part may examine up to SCAN_BUDGET jobs: the next shard's part would
            # take the page past the budget unless nothing was examined yet.
            if len(jobs) >= limit or (filtered and scanned > 0):
                return JobPage(jobs, f"{k}:{mark}:", scanned)

    async def dead_letters(self, queue: str, *, limit: int = 100, offset: int = 0) -> list[Job]:
        got: list[Job] = []
        skip = offset
        for shard in self._shards:
            if len(got) >= limit:
                break
            if skip > 0:
                held = (await shard.stats([queue])).get(queue, QueueStats()).dead
                if skip >= held:
                    skip -= held
                    continue
            got.extend(await shard.dead_letters(queue, limit=limit - len(got), offset=skip))
            skip = 0
        return got

    async def requeue_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        return sum(await self._each(lambda shard: shard.requeue_dead(queue, job_ids)))

    async def purge(self, queue: str) -> int:
        return sum(await self._each(lambda shard: shard.purge(queue)))

    async def purge_dead(self, queue: str) -> int:
        return sum(await self._each(lambda shard: shard.purge_dead(queue)))

    async def forget(self, job_ids: Sequence[str]) -> int:
        return sum(await self._each(lambda shard: shard.forget(job_ids)))

    async def pause_queue(self, queue: str) -> bool:
        changed = await self._home.pause_queue(queue)
        await gather([partial(s.pause_queue, queue) for s in self._shards[1:]])
        return changed

    async def resume_queue(self, queue: str) -> bool:
        changed = await self._home.resume_queue(queue)
        await gather([partial(s.resume_queue, queue) for s in self._shards[1:]])
        return changed

    async def paused_queues(self) -> frozenset[str]:
        return await self._home.paused_queues()

    async def _each(self, call: Callable[[Broker], Awaitable[T]]) -> list[T]:
        return await gather([partial(call, s) for s in self._shards])

    # -- the home shard: limits, coordination, streams ----------------------------------------
    async def set_limits(
        self, specs: Mapping[str, LimitSpec | None], *, only_new: bool = False
    ) -> None:
        await self._home.set_limits(specs, only_new=only_new)

    async def limit_specs(self) -> dict[str, LimitSpec]:
        return await self._home.limit_specs()

    async def limit_usage(self, name: str, *, top: int = 10) -> LimitUsage:
        return await self._home.limit_usage(name, top=top)

    async def claim(self, key: str, ttl: float) -> bool:
        return await self._home.claim(key, ttl)

    async def begin_once(self, key: str, token: str, *, hold: float) -> OnceState:
        return await self._home.begin_once(key, token, hold=hold)

    async def end_once(self, key: str, token: str, *, done_for: float | None) -> bool:
        return await self._home.end_once(key, token, done_for=done_for)

    async def announce(self, name: str, record: bytes, *, ttl: float) -> None:
        await self._home.announce(name, record, ttl=ttl)

    async def withdraw(self, name: str) -> None:
        await self._home.withdraw(name)

    async def live(self) -> dict[str, bytes]:
        return await self._home.live()

    async def stream_add(self, stream: str, entry: bytes, *, maxlen: int) -> str:
        return await self._home.stream_add(stream, entry, maxlen=maxlen)

    async def stream_read(
        self, stream: str, group: str, consumer: str, *, count: int, claim_after: float
    ) -> list[tuple[str, bytes]]:
        return await self._home.stream_read(
            stream, group, consumer, count=count, claim_after=claim_after
        )

    async def stream_ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        return await self._home.stream_ack(stream, group, ids)

    async def stream_tail(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, bytes]]:
        return await self._home.stream_tail(stream, after=after, count=count)

    # -- workflows: each lives in one shard ---------------------------------------------------
    async def workflow(self, workflow_id: str) -> WorkflowState | None:
        found = await first(self.count, HOME, lambda k: self._shards[k].workflow(workflow_id))
        return None if found is None else found[1]

    async def workflow_results(
        self, workflow_id: str, job_ids: Sequence[str]
    ) -> list[JobResult | None]:
        found = await first(self.count, HOME, lambda k: self._shards[k].workflow(workflow_id))
        shard = self._home if found is None else self._shards[found[0]]
        return await shard.workflow_results(workflow_id, job_ids)

    async def cancel_workflow(self, workflow_id: str) -> int:
        return sum(await self._each(lambda shard: shard.cancel_workflow(workflow_id)))

    async def close(self) -> None:
        closing, self._replaced = [*self._replaced, *self._shards], []
        await gather([s.close for s in closing])


def shard_count(broker: Broker) -> int:
    """How many shards ``broker`` spreads each queue over: a ``ShardedBroker``'s ``count``, 1
    for any other broker (what ``taskit info`` and ``taskit check`` report)."""
    return broker.count if isinstance(broker, ShardedBroker) else 1
