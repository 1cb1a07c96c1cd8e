"""RedisBroker: the Broker contract on Redis, every state change one Lua script.

The key layout is in ``keys``, the record format in ``records``; the scripts in ``lua/``. This
module marshals arguments, calls the scripts by SHA and turns their replies into Jobs and Leases.

Connections, script calls, reading and admin are in ``_redis_base.RedisBase``; this module has
the job lifecycle: enqueue, reserve, extend, settle, reclaim.

Blocking reserve: when nothing is ready, ``reserve`` waits on the queues' wake lists with one
``BLPOP`` (all keys share a slot). ``enqueue``, an immediate retry, a release and a requeue push a
token there; an enqueue of a job due earlier than every other delayed job pushes one too, so a
blocked worker re-reads how long it may sleep. The wait is bounded by the time until the earliest
delayed job is due (the server says, in its own time) and by the caller's timeout; Redis checks
blocking timeouts only ten times a second, so short waits are cut by the client (see
``_redis_wait``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import msgspec
import redis.exceptions

from taskit._storable import storable
from taskit.broker.redis import requests
from taskit.broker.redis.base import RedisBase, ms
from taskit.broker.redis.records import (
    build_job,
    encode_error,
    merge_state,
    parse_state,
    split_token,
)
from taskit.broker.redis.scripts import SCRIPTS
from taskit.broker.redis.transport import Arg
from taskit.broker.redis.transport.fast import FastClient
from taskit.broker.redis.wait import PIPELINE_FROM, call_or_salvage, wait, wait_then_run
from taskit.errors import BrokerError, CorruptJobError, SerializationError
from taskit.job import (
    Job,
    Lease,
    LeaseState,
    Outcome,
    OutcomeKind,
    decode_spec,
    stored_form,
)

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
        call = _Enqueue(self, jobs, delays)
        while call.done is None:
            call.answer(await self._call(call.request()))
        return call.done

    def enqueue_blocking(
        self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
    ) -> list[Job] | None:
        """``enqueue`` for a thread without an event loop, on a blocking connection of its own;
        None when tests replaced the transport (``connect``): use ``enqueue``."""
        client = self._conn.blocking()
        if client is None:
            return None
        call = _Enqueue(self, jobs, delays)
        while call.done is None:
            request = call.request()
            keys, args = request.keys(self._keys), request.args()
            call.answer(
                self._conn.guard_blocking(
                    lambda: SCRIPTS.call_blocking(client, "enqueue", keys, args)  # noqa: B023
                )
            )
        return call.done

    # -- consuming -------------------------------------------------------------------------
    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        give_up = anyio.current_time() + max(timeout, 0.0)
        leases, buried, wait = await self._reserve_once(queues, count, lease)
        while True:
            remaining = give_up - anyio.current_time()
            if leases or remaining <= 0:
                # The taking step is shielded: a caller cancelled meanwhile gets them released.
                return await self._handed_over(leases)
            if buried:
                leases, buried, wait = await self._reserve_once(queues, count, lease)
                continue
            seconds = remaining if wait is None else min(remaining, wait)
            leases, buried, wait = await self._wait_and_reserve(queues, seconds, count, lease)

    def _reserve_call(
        self, queues: Sequence[str], count: int, lease: float
    ) -> tuple[list[str], list[Arg]]:
        """KEYS and ARGV of a reserve script call (a fresh token stem each time)."""
        request = requests.Reserve(queues, count, ms(lease), secrets.token_hex(16))
        return request.keys(self._keys), request.args()

    async def _reserve_once(
        self, queues: Sequence[str], count: int, lease: float
    ) -> tuple[list[Lease], bool, float | None]:
        """One reserve script call: (leases, whether bad records were dead-lettered, seconds
        until the earliest delayed job is due or None)."""
        if not queues:
            return [], False, None
        keys, args = self._reserve_call(queues, count, lease)
        commands = self._conn.pair().commands
        if not isinstance(commands, FastClient):
            # redis-py (tests): the round trip is shielded, so a cancelled caller still
            # gets what the script leased (``reserve`` then hands it back and re-raises).
            with anyio.CancelScope(shield=True):
                got = await self._reserved(queues, lease, await self._run("reserve", keys, args))
            return got  # noqa: RET504 - outside the scope, whose exit may swallow (mypy)
        # Cancellable while the reply is on its way (a stopped server must not hold up a stop):
        # a reply that comes anyway is salvaged, its leases handed back (``_redis_wait``).
        if self._watch.due():
            await self._watch.check(commands)
        command = ("EVALSHA", SCRIPTS["reserve"].sha, len(keys), *keys, *args)
        raw = await call_or_salvage(self._conn, commands, command, self._salvage(queues, lease))
        if _missing_script(raw):  # Redis lost its scripts: load them (rare; shielded as above)
            with anyio.CancelScope(shield=True):
                got = await self._reserved(queues, lease, await self._run("reserve", keys, args))
            return got  # noqa: RET504 - outside the scope, whose exit may swallow (mypy)
        # No checkpoint from here to the caller's ``_handed_over`` (``_reserved`` shields its
        # own settle): leases reach it even if a cancellation came meanwhile.
        return await self._reserved(queues, lease, await self._named(keys, _checked(raw)))

    def _salvage(self, queues: Sequence[str], lease: float) -> Callable[[Any], Awaitable[None]]:
        """What a cancelled reserve does with a reply that came anyway: hand back its leases."""

        async def salvage(raw: Any) -> None:
            if not _missing_script(raw):  # NOSCRIPT or another error reply: it took nothing
                with contextlib.suppress(BrokerError):
                    got = await self._reserved(queues, lease, await self._conn.guard(_checked(raw)))
                    await self._release(got[0])

        return salvage

    async def _reserved(
        self, queues: Sequence[str], lease: float, reply: list[Any]
    ) -> tuple[list[Lease], bool, float | None]:
        """``_reserve_once``'s answer from a reserve script's reply. Its only checkpoint, the
        settle of records that do not decode, is shielded."""
        now_ms, wait_ms = int(reply[0]), int(reply[1])
        deadline = (now_ms + ms(lease)) / 1000
        leases, bad = self._leases(queues, reply[2:], deadline, reclaimed=False)
        if bad:
            with anyio.CancelScope(shield=True):
                await self.settle(bad)
        return leases, bool(bad), None if wait_ms < 0 else wait_ms / 1000

    async def _wait_and_reserve(
        self, queues: Sequence[str], seconds: float, count: int, lease: float
    ) -> tuple[list[Lease], bool, float | None]:
        """Wait for a wake-up (at most ``seconds``), then reserve once. A long wait carries the
        reserve script right behind its BLPOP (see ``_redis_wait``): one round trip fewer."""
        wake = [self._keys.wake(q) for q in queues]
        fast = isinstance(self._conn.pair().waits, FastClient)
        if not fast or seconds < PIPELINE_FROM or not wake:
            await wait(self._conn, wake, seconds)
            return await self._reserve_once(queues, count, lease)
        keys, args = self._reserve_call(queues, count, lease)
        command = ("EVALSHA", SCRIPTS["reserve"].sha, len(keys), *keys, *args)
        raw = await wait_then_run(self._conn, wake, seconds, command, self._salvage(queues, lease))
        with anyio.CancelScope(shield=True):  # a reply may carry leases: never drop it
            if raw is None:
                got: tuple[list[Lease], bool, float | None] = ([], False, None)
            elif _missing_script(raw):
                got = await self._reserve_once(queues, count, lease)  # loads the scripts
            else:
                got = await self._reserved(queues, lease, await self._named(keys, _checked(raw)))
        return got

    def _leases(
        self, queues: Sequence[str], rows: list[Any], deadline: float, *, reclaimed: bool
    ) -> tuple[list[Lease], list[Outcome]]:
        """Leases from (q, id, spec, state, err) rows, and the outcomes to settle at once:
        DEAD_LETTER for a job that does not decode; CANCEL for a reclaimed job whose cancel was
        requested (a reserved one runs: its worker learns of the cancel when it extends)."""
        leases: list[Lease] = []
        now: list[Outcome] = []
        for i in range(0, len(rows), 5):
            q, raw_id, spec, state, err = rows[i : i + 5]
            queue = queues[int(q) - 1]
            # The script checked the state and wrote it anew: field 5 is the token it gave.
            token = f"{state.split(b'|', 5)[4].decode(errors='replace')}|{queue}"
            # An id that is not UTF-8 (damaged data) is settled under its very bytes (_packing).
            job_id = raw_id.decode(errors="surrogateescape")
            try:
                if not raw_id.isascii():
                    raw_id.decode()  # an id taskit never writes: a dead letter with a reason
                parsed = parse_state(state, job_id)
                job = merge_state(decode_spec(spec), job_id, parsed, err, b"")
            except UnicodeDecodeError:
                shown = raw_id.decode(errors="backslashreplace")
                now.append(_unreadable(job_id, token, CorruptJobError(shown, "id", "is not UTF-8")))
                continue
            except (SerializationError, CorruptJobError, msgspec.DecodeError) as exc:
                now.append(_unreadable(job_id, token, exc))
                continue
            if parsed.cancel and reclaimed:  # its cancel was requested: it ends CANCELLED
                now.append(Outcome(job_id=job_id, token=token, kind=OutcomeKind.CANCEL))
                continue
            leases.append(Lease(job=job, token=token, deadline=deadline))
        return leases, now

    async def extend(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        if not leases:
            return []
        each = []
        for held in leases:
            rand, queue = split_token(held.token) or ("", held.job.queue)
            each.append((held.job.id, queue, rand))
        reply = await self._call(requests.Extend(ms(lease), each))
        return [LeaseState(state.decode()) for state in reply]

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        applied: list[bool] = [False] * len(outcomes)
        each: list[tuple[str, str, str, str, int, bytes, bytes]] = []
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
            sent.append(i)
        if sent:
            reply = await self._call(requests.Settle(self._ttl_ms, each))
            for i, ok in zip(sent, reply, strict=True):
                applied[i] = bool(ok)
        return applied

    async def reclaim(
        self, queues: Sequence[str], *, lease: float, limit: int = 100
    ) -> list[Lease]:
        if not queues or limit < 1:
            return []
        reply = await self._call(requests.Reclaim(queues, ms(lease), limit, secrets.token_hex(16)))
        deadline = (int(reply[0]) + ms(lease)) / 1000
        leases, now = self._leases(queues, reply[1:], deadline, reclaimed=True)
        if now:  # only a settle, given the job ids, can name their done keys
            await self.settle(now)
        return leases


def _unreadable(job_id: str, token: str, exc: Exception) -> Outcome:
    """The DEAD_LETTER outcome of a leased job whose stored bytes do not decode."""
    return Outcome(
        job_id=job_id,
        token=token,
        kind=OutcomeKind.DEAD_LETTER,
        error=f"stored job does not decode: {exc}",
        error_type=type(exc).__name__,
    )


class _Enqueue:
    """One enqueue: its request (``requests.Enqueue``) each round, and its reply as stored Jobs
    (``done``). A reply naming a dead letter of another queue asks for another round with that
    queue's keys."""

    def __init__(
        self, broker: RedisBroker, jobs: Sequence[Job], delays: Sequence[float] | None
    ) -> None:
        if delays is not None and len(delays) != len(jobs):
            raise ValueError(f"got {len(delays)} delays for {len(jobs)} jobs")
        self._broker, self._jobs, self._delays = broker, jobs, delays
        # Everything encodes and decodes back, or nothing is stored.
        self._forms = [stored_form(job) for job in jobs]
        self._dead_in = [job.queue for job in jobs]
        self._rounds = 0
        self.done: list[Job] | None = [] if not jobs else None

    def request(self) -> requests.Enqueue:
        delays = self._delays
        delays_ms = [ms(d) for d in delays] if delays else [0] * len(self._jobs)
        specs = [spec for _, spec in self._forms]
        return requests.Enqueue(self._jobs, specs, delays_ms, list(self._dead_in))

    def answer(self, reply: list[Any]) -> None:
        if reply[0] == b"unreadable":  # nothing was written: the record is not replaced unseen
            field, _, detail = reply[2].decode(errors="replace").partition(" ")
            raise CorruptJobError(
                self._jobs[int(reply[1]) - 1].id,
                field.rstrip(":"),
                f"{detail}; nothing was enqueued",
            )
        if reply[0] != b"ok":
            self._rounds += 1  # each round learns one job's dead-letter queue
            if self._rounds > len(self._jobs):  # pragma: no cover - only if Redis keeps changing
                raise BrokerError("enqueue kept finding dead letters in other queues")
            i = int(reply[1]) - 1
            try:
                self._dead_in[i] = reply[2].decode()  # a dead letter elsewhere
            except UnicodeDecodeError:  # as get and cancel read its state: unreadable
                raise CorruptJobError(
                    self._jobs[i].id, "queue", f"is not UTF-8: {reply[2]!r}; nothing was enqueued"
                ) from None
            return
        self.done = [
            self._row(job, spec, reply[1 + 5 * i : 6 + 5 * i])
            for i, (job, spec) in enumerate(self._forms)
        ]

    def _row(self, job: Job, spec: bytes, row: list[Any]) -> Job:
        kept, old_spec, state, err, res = row
        if kept:
            return self._broker._job(job.id, old_spec, state, err, res)
        if state.startswith(b"pending|"):
            return job  # stored as it was sent: pending, nothing else set
        return build_job(job.id, spec, state, b"", b"")


def _missing_script(reply: Any) -> bool:
    """Whether a raw reply is NOSCRIPT (Redis lost the scripts: nothing ran)."""
    return isinstance(reply, redis.exceptions.ResponseError) and "NOSCRIPT" in str(reply)


async def _checked(reply: Any) -> Any:
    """``reply``, or the redis-py exception of an error reply raised (for ``guard``)."""
    return FastClient.raise_for(reply)
