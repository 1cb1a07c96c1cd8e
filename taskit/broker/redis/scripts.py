"""Talking to Redis: the Lua script registry, and the clients of each event loop.

``Scripts``: each ``lua/<name>-<numkeys>.lua`` loaded once, called by SHA.

A command script is one file whose name ends in its key count (``cancel-8.lua``) or in ``n``
when the count depends on the batch (``reserve-n.lua``). Files whose name starts with ``_`` hold
shared helpers: a command pastes one in with a line ``-- @include _common.lua``. The expanded
source is what Redis sees and what the SHA is computed from.

Calls go out as ``EVALSHA``; a ``NOSCRIPT`` answer (Redis restarted, ``SCRIPT FLUSH``, failover)
loads the script and retries once, transparently. Nothing else is retried here.

``Connections``: redis.asyncio clients belong to one event loop, and an App may use one broker
from two loops (its worker loop and a portal thread for sync enqueues), so there is a pair of
clients per running loop, made on first use: one pool for commands, one for blocking waits (no
socket timeout there, as a wait may be long: the caller bounds it). ``close()`` closes them all.
Every connect and every reply is bounded by the broker's ``timeout``; ``guard`` tells a command
that was never sent (``BrokerConnectionError``) from one whose reply was lost
(``BrokerOutcomeUnknownError``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
import redis.exceptions
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from taskit.broker.redis.transport.fast import (
    DEFAULT_TIMEOUT,
    OOM_REPLY,
    FastClient,
    ReplyLost,
    supports,
)
from taskit.broker.redis.transport.packing import use_fast_packing
from taskit.broker.redis.transport.sync import BlockingClient
from taskit.config import redact_url
from taskit.errors import (
    BrokerAuthenticationError,
    BrokerConnectionError,
    BrokerError,
    BrokerOutcomeUnknownError,
    BrokerOutOfMemoryError,
    BrokerValueTooLargeError,
    ConfigurationError,
)

__all__ = ["Arg", "ClientPair", "Connections", "Script", "ScriptName", "Scripts"]

#: How Redis refuses an argument over ``proto-max-bulk-len`` (it then drops the connection).
_TOO_LARGE = "Protocol error: invalid bulk length"

#: Every command script, by the name before its key count.
ScriptName = Literal[
    "announce",
    "cancel",
    "dead-letters",
    "enqueue",
    "extend",
    "get",
    "live",
    "purge",
    "purge-dead",
    "reclaim",
    "requeue-dead",
    "reserve",
    "settle",
    "stats",
    "withdraw",
]

_FILE = re.compile(r"^(?P<name>[a-z][a-z-]*?)-(?P<keys>\d+|n)\.lua$")
_INCLUDE = re.compile(r"^-- @include (?P<file>_[a-z_]+\.lua)\s*$", re.MULTILINE)

Arg = str | bytes | int | float
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Script:
    """One command script: its expanded source, SHA-1 and declared key count (None: varies)."""

    name: str
    source: bytes
    sha: str
    numkeys: int | None


class Scripts:
    """The loaded scripts of the ``taskit.broker`` package; one instance serves any client."""

    def __init__(self) -> None:
        folder = resources.files("taskit.broker.redis").joinpath("lua")
        texts = {entry.name: entry.read_text("utf-8") for entry in folder.iterdir()}
        self._scripts: dict[str, Script] = {}
        for filename, text in sorted(texts.items()):
            match = _FILE.match(filename)
            if filename.startswith("_") or match is None:
                continue
            source = _INCLUDE.sub(lambda m: texts[m.group("file")], text).encode()
            keys = match.group("keys")
            self._scripts[match.group("name")] = Script(
                name=match.group("name"),
                source=source,
                sha=hashlib.sha1(source).hexdigest(),
                numkeys=None if keys == "n" else int(keys),
            )

    def __getitem__(self, name: ScriptName) -> Script:
        return self._scripts[name]

    @property
    def names(self) -> list[str]:
        """The names of every loaded command script."""
        return sorted(self._scripts)

    async def call(
        self, client: ScriptClient, name: ScriptName, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """Run script ``name`` with ``keys`` and ``args``; its raw reply.

        Raises ``ValueError`` if a fixed-key script gets the wrong number of keys, and whatever
        redis-py raises for a failed call (connection errors, script errors), except NOSCRIPT.
        """
        script = self._for(name, keys)
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            _check_loaded(script, await client.script_load(script.source))
        return await client.evalsha(script.sha, len(keys), *keys, *args)

    def call_blocking(
        self, client: BlockingClient, name: ScriptName, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """``call`` on a blocking connection (same errors)."""
        script = self._for(name, keys)
        try:
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            _check_loaded(script, client.script_load(script.source))
        return client.evalsha(script.sha, len(keys), *keys, *args)

    def _for(self, name: ScriptName, keys: Sequence[str]) -> Script:
        script = self._scripts[name]
        if script.numkeys is not None and len(keys) != script.numkeys:
            raise ValueError(f"script {name} takes {script.numkeys} keys, got {len(keys)}")
        return script


def _handshake_is_connecting(pool: ConnectionPool) -> None:
    """Make a failed handshake (AUTH, SELECT, CLIENT SETNAME) of ``pool``'s connections a
    plain connection error: the caller's command was not sent yet, whatever redis-py's message
    (a handshake read that timed out reads like a lost reply)."""
    base = pool.connection_class
    if getattr(base, "_taskit_handshake", False):
        return

    class Connecting(base):  # type: ignore[valid-type,misc]
        _taskit_handshake = True

        async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            try:
                await super().connect_check_health(*args, **kwargs)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                if isinstance(exc, redis.exceptions.AuthenticationError):
                    raise
                raise redis.exceptions.ConnectionError(f"cannot connect: {exc}") from None

    Connecting.__name__ = Connecting.__qualname__ = f"Connecting{base.__name__}"
    pool.connection_class = Connecting


def _reply_lost(exc: BaseException) -> bool:
    """Whether ``exc`` came after the command was written: our clients say so with
    ``ReplyLost``; redis-py only in its messages (a read that timed out or found the
    connection closed)."""
    if isinstance(exc, ReplyLost):
        return True
    return isinstance(
        exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
    ) and str(exc).startswith(_READING)


def _check_loaded(script: Script, reply: Any) -> None:
    """The server hashes what it got: a SHA other than ours is a bug here."""
    loaded = reply.decode() if isinstance(reply, bytes) else str(reply)
    if loaded != script.sha:
        raise RuntimeError(f"Redis gave script {script.name} SHA {loaded}, expected {script.sha}")


_CLOSE_TIMEOUT = 5.0
#: A connection failure within this share of ``timeout`` came at once (a dead pooled socket
#: found on use), not after a wait for a silent server: only such a failure is worth a repeat.
_PROMPT = 0.1
#: redis-py's messages for a failure after the command was written (reading its reply).
_READING = ("Timeout reading", "Error while reading", "Connection closed by server")


#: What runs scripts: redis-py's client, or the faster pipelined one for plain URLs.
ScriptClient = Redis | FastClient


@dataclass(slots=True)
class ClientPair:
    """One event loop's clients: ``main`` for commands, ``blocking`` for BLPOP waits, and
    ``scripts`` for the script calls every job makes (``FastClient`` where the URL allows it,
    else ``main``)."""

    main: Redis
    blocking: Redis
    scripts: ScriptClient
    waits: FastClient | None = None  # blocking waits, on a connection of their own


class Connections:
    """The clients of one broker, per running event loop, and the mapping of redis-py errors.

    ``connect`` (tests only) replaces connecting to ``url``: a factory of ready clients.
    ``timeout``: seconds a connect or a reply may take (see ``Settings.broker_timeout``).
    """

    def __init__(
        self,
        url: str,
        connect: Callable[[], Redis] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._url = url
        self.timeout = timeout
        self._password = urlsplit(url).password
        self._connect = connect
        self._lock = threading.Lock()
        self._pairs: dict[asyncio.AbstractEventLoop, ClientPair] = {}
        self._local = threading.local()  # .client: this thread's BlockingClient
        # Weak: a thread that ends takes its client (and socket) with it.
        self._blocking: weakref.WeakSet[BlockingClient] = weakref.WeakSet()
        #: Called (from any thread) each time Redis refuses a write for being out of memory.
        self.on_full: Callable[[], None] | None = None

    def pair(self) -> ClientPair:
        """This event loop's clients, made on first use; ``ConfigurationError`` off asyncio."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "RedisBroker runs on asyncio only (redis-py does not support trio)"
            ) from None
        pair = self._pairs.get(loop)  # every script call comes here: no lock once it exists
        if pair is not None:
            return pair
        with self._lock:
            pair = self._pairs.get(loop)
            if pair is None:
                for old in [lp for lp in self._pairs if lp.is_closed()]:
                    del self._pairs[old]
                main = self._client(False)
                fast = self._connect is None and supports(self._url)
                t = self.timeout
                scripts: ScriptClient = FastClient(self._url, timeout=t) if fast else main
                waits = FastClient(self._url, "taskit-wait", t) if fast else None
                pair = ClientPair(main, self._client(True), scripts, waits)
                self._pairs[loop] = pair
            return pair

    def _client(self, blocking: bool) -> Redis:
        if self._connect is not None:
            return self._connect()
        client = Redis.from_url(
            self._url,
            socket_connect_timeout=self.timeout,
            socket_timeout=None if blocking else self.timeout,
            # Never sent twice: a connection that fails after the command went out may have run
            # it (guard says so). A pooled socket that died with a restarted Redis is found and
            # made anew when taken from the pool, before anything is sent on it.
            retry=Retry(NoBackoff(), 0),
            client_name="taskit",
        )
        use_fast_packing(client.connection_pool)
        _handshake_is_connecting(client.connection_pool)
        return client

    def blocking(self) -> BlockingClient | None:
        """This thread's blocking script connection (made on first use), or None when the URL
        needs redis-py (TLS) or a test factory replaces connecting."""
        if self._connect is not None or not supports(self._url):
            return None
        client: BlockingClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = BlockingClient(self._url, timeout=self.timeout)
            with self._lock:
                self._blocking.add(client)
        return client

    async def guard(self, call: Awaitable[Any]) -> Any:
        """Await a redis-py call: ``BrokerAuthenticationError`` when Redis refuses the
        credentials or the user's permissions (waiting will not help), ``BrokerConnectionError``
        when it cannot be reached (nothing was sent), ``BrokerOutcomeUnknownError`` when the
        command was sent and its reply lost, ``BrokerOutOfMemoryError`` when it is over
        ``maxmemory``, ``BrokerError`` for another error reply. No password is shown."""
        try:
            return await call
        except (redis.exceptions.RedisError, OSError) as exc:
            error = self._failed(exc)
            raise error from (exc if type(error) is BrokerError else None)

    async def guard_repeatable(self, make: Callable[[], Awaitable[T]]) -> T:
        """``guard`` for a command that is safe to run twice (a read, or a write that a repeat
        cannot change, like ``SET NX`` of one value): made by ``make``, and made once more on a
        connection failure. Why: a pooled connection whose server restarted looks alive until
        the loop reads its end, so the first command on it fails with nothing run; only a
        command that may run twice can be sent again. Only a failure that came at once is
        repeated: one that waited (a frozen or silent server) would wait again, and the caller
        would wait twice ``timeout``."""
        began = time.monotonic()
        try:
            return await make()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            if time.monotonic() - began >= self.timeout * _PROMPT:
                error = self._failed(exc)
                raise error from (exc if type(error) is BrokerError else None)
        except redis.exceptions.RedisError as exc:  # an error reply: mapped as ``guard`` does
            error = self._failed(exc)
            raise error from (exc if type(error) is BrokerError else None)
        return await self.guard(make())  # type: ignore[no-any-return]

    def guard_blocking(self, call: Callable[[], T]) -> T:
        """``guard`` for a blocking call."""
        try:
            return call()
        except (redis.exceptions.RedisError, OSError) as exc:
            error = self._failed(exc)
            raise error from (exc if type(error) is BrokerError else None)

    def _failed(self, exc: BaseException) -> BrokerError:
        """``exc`` translated; an out-of-memory refusal is also reported to ``on_full``."""
        error = self._translated(exc)
        if isinstance(error, BrokerOutOfMemoryError) and self.on_full is not None:
            self.on_full()
        return error

    def _translated(self, exc: BaseException) -> BrokerError:
        if isinstance(
            exc, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError
        ):
            return BrokerAuthenticationError(
                f"Redis at {redact_url(self._url)} refused the credentials: {self._scrub(exc)}"
            )
        if isinstance(exc, redis.exceptions.OutOfMemoryError) or (
            isinstance(exc, redis.exceptions.ResponseError) and OOM_REPLY in str(exc)
        ):
            return BrokerOutOfMemoryError(
                f"Redis at {redact_url(self._url)} is out of memory: used memory is over "
                "'maxmemory' and nothing may be evicted (maxmemory-policy noeviction), so it "
                "refused to store more; nothing of this call was stored. Free memory or raise "
                "maxmemory (docs/operations.md)."
            )
        if isinstance(exc, redis.exceptions.ResponseError) and _TOO_LARGE in str(exc):
            return BrokerValueTooLargeError(
                f"Redis at {redact_url(self._url)} refused a value bigger than it takes in one "
                f"argument (proto-max-bulk-len, 512 MB by default): {self._scrub(exc)}; nothing "
                "of this call was stored"
            )
        if _reply_lost(exc):
            return BrokerOutcomeUnknownError(
                f"Redis at {redact_url(self._url)} did not reply: {self._scrub(exc)}. The command"
                " was sent, so its outcome is unknown: it may have run. Retry only what is safe"
                " to repeat, e.g. an enqueue with the same job id (idempotent while the job is"
                " unfinished)"
            )
        if isinstance(
            exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | OSError
        ):
            return BrokerConnectionError(
                f"Redis at {redact_url(self._url)} cannot be reached: {self._scrub(exc)}"
            )
        return BrokerError(f"Redis at {redact_url(self._url)} failed: {self._scrub(exc)}")

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return text.replace(self._password, "***") if self._password else text

    async def close(self) -> None:
        """Close every loop's clients: this loop's now, a live other loop's on that loop."""
        with self._lock:
            pairs, self._pairs = self._pairs, {}
            blocking = list(self._blocking)  # kept: a thread using one reconnects on next use
        for sync_client in blocking:
            sync_client.close()
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, pair in pairs.items():
            clients: list[Redis | FastClient] = [pair.main, pair.blocking]
            if pair.scripts is not pair.main:
                clients.append(pair.scripts)
            if pair.waits is not None:
                clients.append(pair.waits)
            for client in clients:
                if loop is here:
                    await client.aclose()
                elif not loop.is_closed() and loop.is_running():
                    done = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                    with anyio.move_on_after(_CLOSE_TIMEOUT):  # that loop may be busy or ending
                        await asyncio.wrap_future(done)
