"""RedisBroker: the Broker contract on Redis, every state change one Lua script.

The key layout is in ``keys``, the record format in ``records``; the scripts in ``lua/``. This
module calls the scripts by SHA through the request objects of ``requests``, which build their
arguments and read their replies.

Connections, script calls, reading and admin are in ``base.RedisBase``; this module has the job
lifecycle: enqueue, reserve, extend, settle, reclaim. Each builds its ``requests`` object, runs
it, and uses the typed answer that object reads from the reply.

Blocking reserve: when nothing is ready, ``reserve`` waits on the queues' wake lists with one
``BLPOP`` (all keys share a slot). ``enqueue``, an immediate retry, a release and a requeue push a
token there; an enqueue of a job due earlier than every other delayed job pushes one too, so a
blocked worker re-reads how long it may sleep. The wait is bounded by the time until the earliest
delayed job is due (the server says, in its own time) and by the caller's timeout; Redis checks
blocking timeouts only ten times a second, so short waits are cut by the client (see
``wait``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import redis.exceptions

from taskit._storable import storable
from taskit.broker.checks import (
    check_queue,
    check_specs,
    check_stream,
    check_usage,
    kept_or_expired,
)
from taskit.broker.redis import coalesce, requests
from taskit.broker.redis.base import RedisBase, ms
from taskit.broker.redis.errors import refusal_of
from taskit.broker.redis.records import encode_error, split_token
from taskit.broker.redis.requests import DeadElsewhere, Leased
from taskit.broker.redis.scripts import SCRIPTS
from taskit.broker.redis.streams import StreamCommands
from taskit.broker.redis.transport import Blocking
from taskit.broker.redis.transport.fast import FastClient
from taskit.broker.redis.transport.pacing import Pacing
from taskit.broker.redis.wait import PIPELINE_FROM, call_or_salvage, wait, wait_then_run
from taskit.dependencies import check_after
from taskit.errors import BrokerError
from taskit.fairness import check_groups
from taskit.job import (
    Job,
    JobResult,
    Lease,
    LeaseState,
    Outcome,
    ProgressUpdate,
    encode_progress,
    stored_form,
)
from taskit.limits import LimitSpec, LimitUsage
from taskit.workflow import WorkflowState

__all__ = ["RedisBroker"]


class RedisBroker(RedisBase):
    """The Broker contract on Redis (6.0 or newer; Cluster-ready: one hash tag per prefix).

    Its arguments and the errors its calls raise are documented on ``__init__`` (defined with
    the connections and settings in ``RedisBase``); this class adds the job lifecycle.
    """

    # -- producing -------------------------------------------------------------------------
    async def enqueue(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job]:
        """See ``Broker.enqueue``. A batch of plain jobs enqueued while another is on its way
        from this loop goes in one script call with the others enqueued meanwhile
        (``coalesce``): a caller cancelled while it waits may still have its jobs stored, as
        for any command already sent."""
        call = _Enqueue(jobs, delays, self._ttl_ms)
        waiter = self._coalesced.join(call) if call.joins else None
        if waiter is not None:  # another call is on its way: this one goes in the next
            done = await self._coalesced.wait(waiter, self._alone)
        else:
            try:
                done = await self._alone(call)
            finally:
                if call.joins:
                    self._coalesced.release(self._together)
        if str not in map(type, done):  # the common answer: every job stored or kept, no id
            return done  # type: ignore[return-value]
        return [
            got if isinstance(got, Job) else kept_or_expired(await self.get(got), got, job.queue)
            for got, job in zip(done, jobs, strict=True)
        ]

    async def _alone(self, call: _Enqueue) -> list[Job | str]:
        """``call``'s jobs stored by calls of their own (a round per dead letter elsewhere)."""
        while call.done is None:
            call.answer(await self._call(call.request()))
        return call.done

    async def _together(self, calls: list[_Enqueue]) -> _Answers:
        """The jobs of plain ``calls`` stored by one script call; each call's answer or error
        (None: the script wrote nothing, and each call goes on its own)."""
        request = _merged(calls, self._ttl_ms)
        return _shared(calls, await self._run(request.script, request.keys(self._keys),
                                              request.args()))  # fmt: skip

    def enqueue_blocking(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job] | None:
        """``enqueue`` for a thread without an event loop, on the blocking connection threads
        share; None when tests replaced the transport (``connect``): use ``enqueue``. Plain
        jobs enqueued while another thread's are on their way share one script call
        (``coalesce``)."""
        client = self._conn.blocking()
        if client is None:
            return None
        call = _Enqueue(jobs, delays, self._ttl_ms)
        coalesced = self._coalesced
        held = coalesced.join_blocking(call) if call.joins else None
        if held is not None:  # another thread's call is on its way: this one goes in the next
            done = coalesced.wait_blocking(held, self._alone_blocking, self._together_blocking)
        else:
            try:
                done = self._alone_blocking(call, client)
            finally:
                if call.joins:
                    coalesced.release_blocking()
        if str not in map(type, done):  # the common answer: every job stored or kept, no id
            return done  # type: ignore[return-value]
        out: list[Job] = []
        for got, job in zip(done, jobs, strict=True):
            if not isinstance(got, Job):  # a dedup window's job that has finished: read it
                read = requests.Get(got)
                raw = self._run_blocking(client, "get", read.keys(self._keys), read.args())
                got = kept_or_expired(read.answer(raw), got, job.queue)
            out.append(got)
        return out

    def _alone_blocking(self, call: _Enqueue, client: Blocking | None = None) -> list[Job | str]:
        """``_alone`` on the blocking connection threads share (``client``, if given)."""
        client = client or self._conn.blocking()
        assert client is not None  # enqueue_blocking found it
        while call.done is None:
            request = call.request()
            keys, args = request.keys(self._keys), request.args()
            call.answer(request.answer(self._run_blocking(client, request.script, keys, args)))
        return call.done

    def _together_blocking(self, calls: list[_Enqueue]) -> _Answers:
        """``_together`` on the blocking connection threads share."""
        client = self._conn.blocking()
        assert client is not None  # enqueue_blocking found it
        request = _merged(calls, self._ttl_ms)
        raw = self._run_blocking(client, request.script, request.keys(self._keys), request.args())
        return _shared(calls, raw)

    # -- consuming -------------------------------------------------------------------------
    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        give_up = anyio.current_time() + max(timeout, 0.0)
        got = await self._reserve_once(queues, count, lease)
        while True:
            remaining = give_up - anyio.current_time()
            if got.leases or remaining <= 0:
                # The taking step is shielded: a caller cancelled meanwhile gets them released.
                return await self._handed_over(got.leases)
            if got.settle:  # bad records were dead-lettered: others may be ready behind them
                got = await self._reserve_once(queues, count, lease)
                continue
            seconds = remaining if got.wait is None else min(remaining, got.wait)
            got = await self._wait_and_reserve(queues, seconds, count, lease)

    def _reserve_request(self, queues: Sequence[str], count: int, lease: float) -> requests.Reserve:
        """A reserve script call (a fresh token stem each time)."""
        return requests.Reserve(queues, count, ms(lease), secrets.token_hex(16))

    async def _reserve_once(self, queues: Sequence[str], count: int, lease: float) -> Leased:
        """One reserve script call's answer, its unreadable records already dead-lettered."""
        if not queues:
            return Leased([], [])
        request = self._reserve_request(queues, count, lease)
        keys = request.keys(self._keys)
        commands = self._conn.pair().commands
        if not isinstance(commands, FastClient):
            # redis-py (tests): the round trip is shielded, so a cancelled caller still
            # gets what the script leased (``reserve`` then hands it back and re-raises).
            with anyio.CancelScope(shield=True):
                got = await self._reserved(
                    request, await self._run("reserve", keys, request.args())
                )
            return got  # noqa: RET504 - outside the scope, whose exit may swallow (mypy)
        # Cancellable while the reply is on its way (a stopped server must not hold up a stop):
        # a reply that comes anyway is salvaged, its leases handed back (``wait``).
        if self._watch.due():
            await self._watch.check(commands)
        command = ("EVALSHA", SCRIPTS["reserve"].sha, len(keys), *keys, *request.args())
        raw = await call_or_salvage(self._conn, commands, command, self._salvage(request))
        pacing = Pacing(anyio.current_time() + self._conn.timeout)
        while await commands.relocate(raw) and pacing.left(anyio.current_time()) > 0:
            # Refused where it went (a failover, a reshard): nothing ran; sent again where the
            # locator now says, cancellable as the first try (a stopping worker stops).
            await anyio.sleep(pacing.step())
            raw = await call_or_salvage(self._conn, commands, command, self._salvage(request))
        if _missing_script(raw) or _asked(raw):
            # Redis lost its scripts (loaded there), or the slot is migrating (ASK, followed
            # by ``execute``): rare; shielded as above.
            with anyio.CancelScope(shield=True):
                got = await self._reserved(
                    request, await self._run("reserve", keys, request.args())
                )
            return got  # noqa: RET504 - outside the scope, whose exit may swallow (mypy)
        # No checkpoint from here to the caller's ``_handed_over`` (``_reserved`` shields its
        # own settle): leases reach it even if a cancellation came meanwhile.
        return await self._reserved(request, await self._named(keys, _reserve_reply(raw)))

    def _salvage(self, request: requests.Reserve) -> Callable[[Any], Awaitable[None]]:
        """What a cancelled reserve does with a reply that came anyway: hand back its leases."""

        async def salvage(raw: Any) -> None:
            if not _missing_script(raw):  # NOSCRIPT or another error reply: it took nothing
                with contextlib.suppress(BrokerError):
                    got = await self._reserved(request, await self._conn.guard(_reserve_reply(raw)))
                    await self._release(got.leases)

        return salvage

    async def _reserved(self, request: requests.Reserve, reply: Any) -> Leased:
        """``request``'s answer to ``reply``, its unreadable records dead-lettered. Its only
        checkpoint, that settle, is shielded."""
        got = request.answer(reply)
        if got.settle:
            with anyio.CancelScope(shield=True):
                await self.settle(got.settle)
        return got

    async def _wait_and_reserve(
        self, queues: Sequence[str], seconds: float, count: int, lease: float
    ) -> Leased:
        """Wait for a wake-up (at most ``seconds``), then reserve once. A long wait carries the
        reserve script right behind its BLPOP (see ``wait``): one round trip fewer."""
        wake = [self._keys.wake(q) for q in queues]
        fast = isinstance(self._conn.pair().waits, FastClient)
        if not fast or seconds < PIPELINE_FROM or not wake:
            await wait(self._conn, wake, seconds)
            return await self._reserve_once(queues, count, lease)
        request = self._reserve_request(queues, count, lease)
        keys = request.keys(self._keys)
        command = ("EVALSHA", SCRIPTS["reserve"].sha, len(keys), *keys, *request.args())
        raw = await wait_then_run(self._conn, wake, seconds, command, self._salvage(request))
        with anyio.CancelScope(shield=True):  # a reply may carry leases: never drop it
            if raw is None:
                got = Leased([], [])
            elif _missing_script(raw) or _refused(raw):  # loads the scripts, or follows it
                got = await self._reserve_once(queues, count, lease)
            else:
                got = await self._reserved(request, await self._named(keys, _reserve_reply(raw)))
        return got

    async def extend(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        if not leases:
            return []
        each = []
        for held in leases:
            rand, queue = split_token(held.token) or ("", held.job.queue)
            each.append((held.job.id, queue, rand))
        return await self._call(requests.Extend(ms(lease), each))

    async def set_progress(self, updates: Sequence[ProgressUpdate]) -> list[bool]:
        sent: list[tuple[str, str, bytes]] = []
        ours: list[int] = []  # which updates carry a token this broker made
        for i, update in enumerate(updates):
            parts = split_token(update.token)
            if parts is not None and isinstance(update.job_id, str):
                sent.append((update.job_id, parts[0], encode_progress(update.progress)))
                ours.append(i)
        answered = [False] * len(updates)
        if sent:
            stored = await self._call(requests.SetProgress(sent))
            for i, ok in zip(ours, stored, strict=True):
                answered[i] = ok
        return answered

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        each: list[tuple[str, str, str, str, int, bytes, bytes]] = []
        ttls: list[int | None] = []  # each job's own result TTL in ms (None: the broker's)
        sent: list[int] = []
        for i, given in enumerate(outcomes):
            # Each outcome is encoded alone: one that cannot be stored fails its own job (see
            # ``storable``), never the call and with it the others.
            checked = storable(given)
            parts = None if checked is None else split_token(given.token)
            if checked is None or parts is None or " " in parts[0]:
                continue  # not a token this broker made: stale by definition
            outcome, result = checked
            rand, queue = parts
            error = encode_error(outcome.error, outcome.error_type, outcome.traceback)
            each.append((outcome.job_id, rand, outcome.kind.value, queue, ms(outcome.delay),
                         error, result))  # fmt: skip
            ttls.append(None if outcome.result_ttl is None else ms(outcome.result_ttl))
            sent.append(i)
        if not sent:
            return [False] * len(outcomes)
        answer, woken = await self._call(requests.Settle(self._ttl_ms, each, ttls))
        await self._wake(woken)
        if len(sent) == len(outcomes):  # every outcome was sent: the answer is in their order
            return answer
        applied = [False] * len(outcomes)
        for i, ok in zip(sent, answer, strict=True):
            applied[i] = ok
        return applied

    # -- limits ----------------------------------------------------------------------------
    async def set_limits(
        self, specs: Mapping[str, LimitSpec | None], *, only_new: bool = False
    ) -> None:
        checked = check_specs(specs)
        if checked:
            woken = await self._call(requests.LimitsSet(checked, only_new))
            await self._wake(woken)

    async def limit_specs(self) -> dict[str, LimitSpec]:
        return await self._call(requests.LimitsGet())

    async def limit_usage(self, name: str, *, top: int = 10) -> LimitUsage:
        check_usage(name, top)
        return await self._call(requests.LimitsUsage(name, top))

    async def _wake(self, queues: Sequence[str]) -> None:
        """Wake blocked reserves of ``queues``, whose held-back jobs a limit let out of line.
        Lost (the call fails): they are seen at those queues' next reserve."""
        if queues:
            with contextlib.suppress(BrokerError):
                await self._call(requests.Wake(queues))

    # -- streams (``streams``) -----------------------------------------------------------------
    async def stream_add(self, stream: str, entry: bytes, *, maxlen: int) -> str:
        check_stream(maxlen=maxlen)
        return await self._stream(stream).add(entry, maxlen)

    async def stream_read(
        self, stream: str, group: str, consumer: str, *, count: int, claim_after: float
    ) -> list[tuple[str, bytes]]:
        check_stream(count=count, claim_after=claim_after)
        return await self._stream(stream).read(group, consumer, count, ms(claim_after))

    async def stream_ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        return await self._stream(stream).ack(group, ids)

    def _stream(self, stream: str) -> StreamCommands:
        commands = self._conn.pair().commands

        async def execute(*command: Any) -> Any:
            return await self._conn.guard(commands.execute(*command))

        return StreamCommands(execute, self._keys.stream(stream))

    # -- workflows (``workflows``, ``lua/_workflow.lua``) -----------------------------------------
    async def workflow(self, workflow_id: str) -> WorkflowState | None:
        return await self._call(requests.WorkflowGet(workflow_id))

    async def workflow_results(
        self, workflow_id: str, job_ids: Sequence[str]
    ) -> list[JobResult | None]:
        if not job_ids:
            return []
        return await self._call(requests.WorkflowResults(workflow_id, job_ids))

    async def cancel_workflow(self, workflow_id: str) -> int:
        return await self._call(requests.WorkflowCancel(workflow_id, self._ttl_ms))

    async def reclaim(
        self, queues: Sequence[str], *, lease: float, limit: int = 100
    ) -> list[Lease]:
        if not queues or limit < 1:
            return []
        got = await self._call(requests.Reclaim(queues, ms(lease), limit, secrets.token_hex(16)))
        if got.settle:  # only a settle, given the job ids, can name their done keys
            await self.settle(got.settle)
        return got.leases

    # -- flow control: paused queues ---------------------------------------------------------
    async def pause_queue(self, queue: str) -> bool:
        return await self._call(requests.Pause(check_queue(queue), True))

    async def resume_queue(self, queue: str) -> bool:
        return await self._call(requests.Pause(check_queue(queue), False))

    async def paused_queues(self) -> frozenset[str]:
        key = self._keys.paused
        members = await self._named([key], self._conn.pair().commands.execute("SMEMBERS", key))
        return frozenset(m.decode(errors="replace") for m in members)


#: ``_together``'s answer: per call, its stored jobs or its error; None: each call alone.
_Answers = list[list[Job | str] | BaseException] | None


class _Enqueue:
    """One enqueue: its request (``requests.Enqueue``) each round, and the stored Jobs
    (``done``) once an answer has them. An answer naming a dead letter of another queue asks
    for another round with that queue's keys. ``joins``: whether it may share a script call
    with other callers' (``coalesce``: plain jobs, not too many), whose size is ``count`` jobs
    of ``weight`` bytes."""

    __slots__ = ("_dead_in", "_delays_ms", "_plain", "_rounds", "_ttl_ms", "count", "done",
                 "forms", "jobs", "joins")  # fmt: skip

    def __init__(self, jobs: Sequence[Job], delays: Sequence[float] | None, ttl_ms: int) -> None:
        if delays is not None and len(delays) != len(jobs):
            raise ValueError(f"got {len(delays)} delays for {len(jobs)} jobs")
        check_groups(jobs)
        for job in jobs:
            if job.workflow is not None or job.after is not None:
                check_after(job.id, job.workflow, job.after)
        self.jobs, self._ttl_ms = jobs, ttl_ms
        # Everything encodes and decodes back, or nothing is stored.
        self.forms = [stored_form(job) for job in jobs]
        self._dead_in = [job.queue for job in jobs]
        self._delays_ms = [ms(d) for d in delays] if delays else [0] * len(jobs)
        self._plain = requests.Enqueue.plain(jobs, self._delays_ms)
        self._rounds = 0
        self.done: list[Job | str] | None = [] if not jobs else None
        self.count = len(jobs)
        self.joins = self._plain and 0 < self.count <= coalesce.MAX_JOBS

    @property
    def weight(self) -> int:
        """The bytes of its encoded jobs (asked only of calls that wait to be combined)."""
        return sum(len(spec) for _, spec in self.forms)

    def request(self) -> requests.Enqueue:
        kind = requests.EnqueuePlain if self._plain else requests.Enqueue
        return kind(self.jobs, self.forms, self._delays_ms, list(self._dead_in), self._ttl_ms)

    def answer(self, answer: list[Job | str] | DeadElsewhere) -> None:
        if isinstance(answer, DeadElsewhere):
            self._rounds += 1  # each round learns one job's dead-letter queue
            if self._rounds > len(self.jobs):  # pragma: no cover - only if Redis keeps changing
                raise BrokerError("enqueue kept finding dead letters in other queues")
            self._dead_in[answer.index] = answer.queue
            return
        self.done = answer


def _merged(calls: Sequence[_Enqueue], ttl_ms: int) -> requests.EnqueuePlain:
    """One plain enqueue of every job of ``calls`` (each dead letter looked for in its own
    queue: a job's first round)."""
    jobs = [job for call in calls for job in call.jobs]
    forms = [form for call in calls for form in call.forms]
    return requests.EnqueuePlain(jobs, forms, [0] * len(jobs), [j.queue for j in jobs], ttl_ms)


def _shared(calls: Sequence[_Enqueue], raw: Any) -> _Answers:
    """Each call's answer (or error reading it) in the 'ok' reply ``raw`` of ``_merged(calls)``
    (five items per job), read by the call's own request; None for any other reply (nothing
    was written: each call goes on its own)."""
    if raw[0] != b"ok":
        return None
    out: list[list[Job | str] | BaseException] = []
    at = 1
    for call in calls:
        end = at + 5 * call.count
        try:
            got = call.request().answer([b"ok", *raw[at:end]])
        except (BrokerError, ValueError) as exc:  # a kept record of its own that is unreadable
            out.append(exc)
        else:
            out.append(got)  # type: ignore[arg-type]  # an 'ok' reply is never DeadElsewhere
        at = end
    return out


def _missing_script(reply: Any) -> bool:
    """Whether a raw reply is NOSCRIPT (Redis lost the scripts: nothing ran)."""
    return isinstance(reply, redis.exceptions.ResponseError) and "NOSCRIPT" in str(reply)


def _asked(reply: Any) -> bool:
    """Whether a raw reply is ASK (its slot is migrating: nothing ran)."""
    return isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith("ASK ")


def _refused(reply: Any) -> bool:
    """Whether a raw reply says the command did not run there (MOVED, READONLY...: see
    ``errors.refusal_of``); a script call made again through ``execute`` follows it."""
    return isinstance(reply, redis.exceptions.ResponseError) and refusal_of(reply) is not None


async def _reserve_reply(reply: Any) -> Any:
    """A reserve script's raw ``reply``, or its error raised as ``SCRIPTS.call`` raises it (an
    ACL refusal inside the script named: fatal to a worker, as for every other script)."""
    return SCRIPTS.raise_for("reserve", reply)
