"""The Redis broker's base: construction and settings, script calls, reading and admin.

``RedisBroker`` (``broker``) adds the job lifecycle (enqueue, reserve, extend, settle, reclaim)
on top. Transports (``connections``) are kept per running event loop, as an App may use one
broker from its worker loop and from a portal thread; they are asyncio protocols, so under trio
every call raises ``ConfigurationError``.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar, cast

from taskit._urls import REDIS_SCHEMES, parse_broker_url
from taskit.broker.base import Broker, BrokerOptions, OnceState
from taskit.broker.browse import Counts, JobPage, Listing
from taskit.broker.redis import requests
from taskit.broker.redis.browsing import Browser
from taskit.broker.redis.coalesce import Coalescer
from taskit.broker.redis.connections import Connections
from taskit.broker.redis.keys import Keys
from taskit.broker.redis.records import LATEST, parse_state, split_record
from taskit.broker.redis.replicas import REPLICATED, Replicas
from taskit.broker.redis.requests import BATCH, Moved, Request
from taskit.broker.redis.scripts import SCRIPTS, ScriptName
from taskit.broker.redis.transport import Arg, Blocking, Connect
from taskit.broker.redis.transport.fast import FastClient
from taskit.broker.redis.watch import ServerWatch
from taskit.config import Settings, redact_url
from taskit.errors import (
    BrokerError,
    BrokerOutcomeUnknownError,
    ConfigurationError,
    SerializationError,
)
from taskit.job import Job, QueueStats, decode_spec

__all__ = ["RedisBase"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class RedisBase(Broker):
    """Construction, settings, script calls, reading and admin of the Broker contract on Redis;
    use ``RedisBroker``, which adds the job lifecycle."""

    asyncio_only = True
    #: How many shards the layout this broker belongs to has (1: not sharded), and the counts
    #: whose shards are all among them (``shards.covered_counts``): set by ``shards`` on the
    #: shards it builds; checked against the count kept, and recorded, by ``ServerWatch``.
    _layout: tuple[int, tuple[int, ...]] = (1, (1,))
    #: The home shard of that layout, when this broker is another of its shards: its check
    #: passes before this one's (``watch``, Shards).
    _home: RedisBase | None = None

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str | None = None,
        result_ttl: float | None = None,
        timeout: float | None = None,
        connect: Connect | None = None,
    ) -> None:
        """A broker on the Redis at ``url``.

        ``url``: ``redis://[user:password@]host[:port][/db]``, ``rediss://`` (TLS) or
        ``unix:///path/to/socket[?db=n]``, with options ``?db=``, ``?password=``, ``?prefix=``
        (and redis-py's ``ssl_*`` on ``rediss://``, read the same way: see
        ``transport.target``); a Redis Cluster as ``redis+cluster://host1:port1,host2:port2``
        (or ``rediss+cluster://``; database 0 only), a Sentinel set as
        ``redis+sentinel://host1:port1,host2:port2/<master name>[/db]`` (or
        ``rediss+sentinel://``, TLS to the data nodes); see ``taskit._urls`` and
        ``transport.locate``. Failovers and reshards are followed within ``timeout``.
        ``prefix`` namespaces every key (``{prefix}:...``). ``result_ttl``: seconds a finished
        job stays readable. ``prefix``
        and ``result_ttl`` left None (the default) come from the URL's ``?prefix=``, else from
        the settings of the App the broker is given to (``TASKIT_REDIS_PREFIX``,
        ``TASKIT_RESULT_TTL``; see ``Broker.configure``), else ``taskit`` and ten minutes.
        ``timeout``: seconds any connect or reply may take (``Settings.broker_timeout``,
        ``TASKIT_BROKER_TIMEOUT``, from the App's settings when None; 5 s by default; a
        blocking wait gets its own length plus this). ``connect``: for tests, makes the
        transports instead of the fast transport to ``url`` (``transport.Connect``; e.g.
        ``transport.redispy.over`` for fakeredis); called per event loop, once per role.

        Raises ``ConfigurationError`` at construction for an unusable URL (naming the bad port,
        db or option; ``?shards=`` above 1 asks for a sharded broker: ``taskit.broker.from_url``
        builds one), prefix, TTL or timeout; at its first call (and every later one) on a
        prefix a sharded broker of more shards used (``keys``, Sharding); and at the first
        call for TLS options it cannot use (a missing certificate file); calls raise
        ``BrokerConnectionError`` (password never shown) when Redis cannot be reached or
        refuses the credentials (nothing was sent), its subclass
        ``BrokerOutcomeUnknownError`` when a command was sent but its reply did not come
        within ``timeout`` or its connection dropped (it may have run), and ``BrokerError``
        when it answers with an error.
        """
        if not isinstance(url, str) or url.partition(":")[0].lower() not in REDIS_SCHEMES:
            raise ConfigurationError(
                f"not a Redis URL: {redact_url(str(url))} (use redis://, rediss://, unix://, "
                "redis+cluster:// or redis+sentinel://)"
            )
        parsed = parse_broker_url(url)
        if parsed.shards > 1:
            raise ConfigurationError(
                f"broker URL {redact_url(url)} asks for {parsed.shards} shards, and a "
                "RedisBroker is one: build it with taskit.broker.from_url(url) (or "
                "taskit.broker.redis.shards.sharded_redis)"
            )
        if prefix is not None and parsed.prefix is not None and prefix != parsed.prefix:
            raise ConfigurationError(
                f"two key prefixes: prefix={prefix!r} and ?prefix={parsed.prefix!r} in "
                f"{redact_url(url)}; give one"
            )
        given_prefix = prefix if prefix is not None else parsed.prefix
        self._replicas: Replicas | None = None
        if parsed.replicas is not None:
            if connect is not None:
                raise ConfigurationError(
                    f"broker URL {redact_url(url)}: ?replicas= needs taskit's own transport "
                    "(its WAIT must follow each write on the same connection); drop connect="
                )
            self._replicas = Replicas(parsed.replicas, parsed.replicas_timeout_ms)
        self._options = BrokerOptions(
            ("redis_prefix", "result_ttl", "broker_timeout"),
            redis_prefix=given_prefix,
            result_ttl=result_ttl,
            broker_timeout=timeout,
        )
        self._url = parsed.url
        self._conn = Connections(parsed.url, connect)
        #: Concurrent plain enqueues, combined into one script call (``RedisBroker.enqueue``).
        self._coalesced: Coalescer[Any, list[Job | str]] = Coalescer()
        self._apply(self._options.current)

    def configure(self, settings: Settings) -> None:
        self._apply(self._options.adopt(settings))

    def _apply(self, settings: Settings) -> None:
        """Use the resolved ``settings``: key prefix, result TTL and the bound on every wait
        (taken by connections made from here on)."""
        self._keys = Keys(settings.redis_prefix)
        self._conn.aim(self._keys.tag)
        self._ttl_ms = math.ceil(settings.result_ttl * 1000)
        self._conn.timeout = settings.broker_timeout
        # Notices a Redis that came back empty, and an eviction policy that may lose jobs.
        self._watch = ServerWatch(
            self._keys.epoch,
            redact_url(self._url),
            self._conn.guard_repeatable,
            self._keys.legacy,
            (self._keys, requests.Shards(*self._layout)),
            None if self._home is None else self._home._checked,
        )
        # Out-of-memory refusals, from any call, are logged once per interval (see _watch).
        self._conn.on_full = self._watch.full
        self._browser = Browser(self._keys, self._ttl_ms, self._call, self._execute)

    async def _checked(self) -> None:
        """Make the server checks (``watch``) that are due, first of all the shard count."""
        if self._watch.due():
            await self._watch.check(self._conn.pair().commands)

    async def _execute(self, *command: Any) -> Any:
        """One plain command, guarded."""
        return await self._conn.guard(self._conn.pair().commands.execute(*command))

    @property
    def keys(self) -> Keys:
        """The key names this broker uses."""
        return self._keys

    @property
    def url(self) -> str:
        """The URL of the Redis this broker uses, any password shown as ``***`` (taskit's own
        options such as ``?prefix=`` taken off)."""
        return redact_url(self._url)

    @property
    def timeout(self) -> float:
        """Seconds a connect or a reply may take: the ``timeout`` given, else the App's
        ``Settings.broker_timeout`` once the broker is given to an App, else 5."""
        return self._conn.timeout

    @property
    def restarts_detected(self) -> int:
        """How many times this broker found its Redis emptied under it (see ``_watch``)."""
        return self._watch.restarts_detected

    # -- browsing (``browsing``) ---------------------------------------------------------------
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
        return await self._browser.list_jobs(queue, listing, cursor, limit, task, text)

    async def counts(
        self, since: float, until: float | None = None, queues: Sequence[str] | None = None
    ) -> list[Counts]:
        return await self._browser.counts(since, until, queues)

    async def promote(self, job_id: str) -> bool:
        return await self._browser.promote(job_id, await self._queue_of(job_id))

    async def forget(self, job_ids: Sequence[str]) -> int:
        return await self._browser.forget(job_ids)

    async def stream_tail(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[tuple[str, bytes]]:
        return await self._browser.stream_tail(stream, after, count)

    async def _queue_of(self, job_id: str) -> str | None:
        """The queue of live job ``job_id`` (None: no live record); ``CorruptJobError`` if its
        record is unreadable."""
        k = self._keys
        raw = await self._named(
            [k.jobs], self._conn.pair().commands.execute("HGET", k.jobs, job_id)
        )
        if raw is None:
            return None
        return parse_state(split_record(raw, job_id)[0], job_id).queue

    # -- reading and admin -----------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        """See ``Broker.get``; ``CorruptJobError`` (naming the field) if the job's stored record
        is unreadable. A spec that does not decode gives a stand-in job instead (no task)."""
        return await self._call(requests.Get(job_id))

    async def cancel(self, job_id: str) -> bool:
        """See ``Broker.cancel``; ``CorruptJobError`` if the job's record is unreadable (its
        queue, and so what to cancel, cannot be known): nothing changes."""
        k = self._keys
        raw = await self._named(
            [k.jobs], self._conn.pair().commands.execute("HGET", k.jobs, job_id)
        )
        if raw is None:
            return False
        state, spec = split_record(raw, job_id)
        queue: str | None = parse_state(state, job_id).queue
        ttl_ms = self._own_ttl_ms(spec)
        for _ in range(3):  # the job's queue changes only if it finishes and is enqueued anew
            if queue is None:
                return False
            answer = await self._call(requests.Cancel(job_id, queue, ttl_ms, self._ttl_ms))
            if not isinstance(answer, Moved):
                return answer
            queue = answer.queue
        return False  # pragma: no cover - a job re-created in another queue three times over

    def _own_ttl_ms(self, spec: bytes) -> int:
        """How long a job ended by ``cancel`` is kept, in ms: its own ``result_ttl`` (read from
        its spec, which never changes), else the broker's (also when the spec does not
        decode: the cancel goes on)."""
        try:
            own = decode_spec(spec).result_ttl
        except SerializationError:
            return self._ttl_ms
        return self._ttl_ms if own is None else ms(own)

    async def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        k = self._keys
        if queues is None:
            members = await self._named(
                [k.queues], self._conn.pair().commands.execute("SMEMBERS", k.queues)
            )
            queues = sorted(_names(members, "queue name", k.queues))
        if not queues:
            return {}
        return await self._call(requests.Stats(queues))

    async def dead_letters(self, queue: str, *, limit: int = 100, offset: int = 0) -> list[Job]:
        return await self._call(requests.DeadLetters(queue, offset, limit))

    async def requeue_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        if job_ids is not None:
            total = 0
            for start in range(0, len(job_ids), BATCH):
                chunk = list(job_ids[start : start + BATCH])
                total += await self._call(requests.RequeueDead(queue, chunk))
            return total
        return await self._drain(requests.RequeueDead(queue))

    async def purge(self, queue: str) -> int:
        return await self._drain(requests.Purge(queue, self._ttl_ms))

    async def purge_dead(self, queue: str) -> int:
        return await self._drain(requests.PurgeDead(queue))

    async def _drain(self, request: Request[int]) -> int:
        """Call a batch script until it reports a short batch; the total it reported."""
        total = 0
        while True:
            n = await self._call(request)
            total += n
            if n < BATCH:
                return total

    # -- coordination ------------------------------------------------------------------------
    async def claim(self, key: str, ttl: float) -> bool:
        if not ttl > 0:
            raise ValueError(f"a claim's ttl must be > 0 seconds, got {ttl!r}")
        commands, name = self._conn.pair().commands, self._keys.claim(key)
        mine = secrets.token_hex(8).encode()
        try:
            taken = await self._conn.guard(commands.execute("SET", name, mine, "NX", "PX", ms(ttl)))
        except BrokerOutcomeUnknownError:
            # The SET may have run: then the key holds this call's value. Answering False
            # would leave a claim nobody acts on (a periodic run skipped by every scheduler).
            return bool(await self._conn.guard(commands.execute("GET", name)) == mine)
        return bool(taken)

    async def begin_once(self, key: str, token: str, *, hold: float) -> OnceState:
        if not hold > 0:
            raise ValueError(f"a once key's hold must be > 0 seconds, got {hold!r}")
        return await self._call(requests.OnceBegin(key, token, ms(hold)))

    async def end_once(self, key: str, token: str, *, done_for: float | None) -> bool:
        if done_for is not None and not done_for > 0:
            raise ValueError(f"a once key's done_for must be > 0 seconds, got {done_for!r}")
        done_ms = 0 if done_for is None else ms(done_for)
        return await self._call(requests.OnceEnd(key, token, done_ms))

    async def announce(self, name: str, record: bytes, *, ttl: float) -> None:
        if not ttl > 0:
            raise ValueError(f"an announcement's ttl must be > 0 seconds, got {ttl!r}")
        await self._call(requests.Announce(name, record, ms(ttl)))

    async def withdraw(self, name: str) -> None:
        await self._call(requests.Withdraw(name))

    async def live(self) -> dict[str, bytes]:
        return await self._call(requests.Live())

    async def close(self) -> None:
        await self._conn.close()

    # -- plumbing --------------------------------------------------------------------------
    async def _call(self, request: Request[T]) -> T:
        """Run ``request``'s script; its answer (errors mapped as ``_named`` does)."""
        keys = request.keys(self._keys)
        return request.answer(await self._run(request.script, keys, request.args()))

    async def _run(self, name: ScriptName, keys: list[str], args: list[Arg]) -> Any:
        commands = self._conn.pair().commands
        if self._watch.due():
            await self._watch.check(commands)
        replicas = self._replicas
        if replicas is not None and name in REPLICATED:
            # Construction made sure the transport is the fast one (``connect`` is refused).
            call = SCRIPTS.call_then(cast(FastClient, commands), name, keys, args,
                                     replicas.command, replicas.seconds)  # fmt: skip
            reply, acked = await self._named(keys, call)
            replicas.check(acked, self.url)  # outside the guard: its error is taskit's own
            return reply
        return await self._named(keys, SCRIPTS.call(commands, name, keys, args))

    def _run_blocking(
        self, client: Blocking, name: ScriptName, keys: list[str], args: list[Arg]
    ) -> Any:
        """``_run`` on a blocking connection (a thread without an event loop)."""
        replicas = self._replicas
        if replicas is None or name not in REPLICATED:
            return self._conn.guard_blocking(
                lambda: SCRIPTS.call_blocking(client, name, keys, args)
            )
        reply, acked = self._conn.guard_blocking(
            lambda: SCRIPTS.call_blocking_then(
                client, name, keys, args, replicas.command, replicas.seconds
            )
        )
        replicas.check(acked, self.url)
        return reply

    async def _named(self, keys: list[str], call: Awaitable[Any]) -> Any:
        """``guard(call)``; a ``WRONGTYPE`` error (a key holding another type than this layout
        keeps there: damaged data) names the key(s) of ``keys`` at fault and what each holds."""
        try:
            return await self._conn.guard(call)
        except BrokerError as exc:
            if type(exc) is not BrokerError or "WRONGTYPE" not in str(exc):
                raise
            if "where taskit keeps" in str(exc):  # a script that checked first named it
                raise
            commands = self._conn.pair().commands
            found = [
                (key, (await self._conn.guard(commands.execute("TYPE", key))).decode())
                for key in keys
            ]
            wrong = [
                f"key {key!r} holds a {kind} where taskit keeps a {self._keys.kind_of(key)}"
                for key, kind in found
                if kind != "none" and self._keys.kind_of(key) not in (None, kind)
            ]
            if not wrong:
                raise
            raise BrokerError(
                f"{exc}: damaged data, {'; '.join(wrong)} (not written by taskit: repair or "
                "delete it)"
            ) from exc


def _names(members: Any, what: str, key: str) -> list[str]:
    """The members of a set of names as text; one that is not UTF-8 (damaged data: no name
    taskit writes is) is left out with a warning naming it and ``key``."""
    names = []
    for m in members:
        try:
            names.append(m.decode())
        except UnicodeDecodeError:
            log.warning("%s %r in %s is not UTF-8; left out", what, bytes(m), key)
    return names


def ms(seconds: float) -> int:
    """Seconds as whole milliseconds toward Redis, rounded up (never early). Durations past the
    datetime range (``inf``, ten thousand years) are cut to it: in effect, never."""
    if not seconds > 0:  # zero, negative or NaN
        return 0
    return math.ceil(min(seconds, LATEST) * 1000)
