"""The Redis broker's connections: two transports per event loop, one blocking client per
thread, and the guards that turn their failures into taskit's errors (``errors``).

A transport belongs to one event loop, and an App may use one broker from two loops (its worker
loop and a portal thread for sync enqueues), so each running loop gets its own ``Pair``, made on
first use: ``commands`` (scripts and plain commands, pipelined: many callers share it) and
``waits`` (blocking ``BLPOP`` waits, which hold their connection). Two sockets per loop is the
least that keeps both promises: a wait never delays a command, and every reply but a wait's is
bounded by ``timeout``. A thread without an event loop (a sync enqueue from a web view) borrows
a ``BlockingClient`` from a pool for its call (``blocking``). ``close()`` closes them all.

The blocking connections belong to the process that made them: a process forked after a sync
enqueue (gunicorn ``--preload``, a master that enqueued at import) would otherwise write on its
parent's socket, and the processes would read each other's replies. ``blocking`` makes a new
shared connection and pool in a forked process (the inherited ones are left to the parent).

The transports are the fast one (``transport.fast``) for every URL, unless ``connect`` (tests)
makes them: e.g. ``transport.redispy.over`` for fakeredis. Sync enqueues need the fast one.

Every transport made here connects where one shared ``Locator`` (``transport.locate``) says:
the URL's server, the cluster node serving the broker's slot, or the master the sentinels
name; each follows a refusal (MOVED, READONLY...) by asking it again, within ``timeout``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import redis.exceptions

from taskit.broker.redis.errors import ErrorMap
from taskit.broker.redis.transport import (
    DEFAULT_TIMEOUT,
    Blocking,
    Connect,
    Locator,
    Role,
    Transport,
)
from taskit.broker.redis.transport.fast import FastClient
from taskit.broker.redis.transport.locate import locator_of
from taskit.broker.redis.transport.shared import SharedClient
from taskit.broker.redis.transport.sync import BlockingClient, BlockingPool
from taskit.config import redact_url
from taskit.errors import BrokerError, BrokerOutOfMemoryError, ConfigurationError

__all__ = ["Connections", "Pair"]

T = TypeVar("T")

_CLOSE_TIMEOUT = 5.0
#: A connection failure within this share of ``timeout`` came at once (a dead pooled socket
#: found on use), not after a wait for a silent server: only such a failure is worth a repeat.
_PROMPT = 0.1


@dataclass(frozen=True, slots=True)
class Pair:
    """One event loop's transports: ``commands`` for everything but blocking waits."""

    commands: Transport
    waits: Transport


class Connections:
    """The transports of one broker, per running event loop, and the mapping of their errors.

    ``connect`` (tests only) makes the transports instead of the fast transport to ``url``.
    ``timeout``: seconds a connect or a reply may take (see ``Settings.broker_timeout``).
    """

    def __init__(
        self, url: str, connect: Connect | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._url = url
        self.timeout = timeout
        self._errors = ErrorMap(url, urlsplit(url).password)
        self._connect = connect
        self._locator: Locator | None = None
        self._key = ""  # the hash tag of the broker's keys (``aim``)
        self._lock = threading.RLock()  # re-entered: pair() makes transports, which read the URL
        self._pairs: dict[asyncio.AbstractEventLoop, Pair] = {}
        self.pool = BlockingPool(self._blocking_client)
        self._shared: SharedClient | None = None  # made on the first sync call
        self._pid = os.getpid()  # the process that owns ``pool`` and ``_shared`` (a fork does not)
        #: Called (from any thread) each time Redis refuses a write for being out of memory.
        self.on_full: Callable[[], None] | None = None

    def pair(self) -> Pair:
        """This event loop's transports, made on first use; ``ConfigurationError`` off asyncio
        or for TLS options that cannot be used (a missing certificate file...)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "RedisBroker runs on asyncio only (its transports are asyncio protocols)"
            ) from None
        pair = self._pairs.get(loop)  # every script call comes here: no lock once it exists
        if pair is not None:
            return pair
        with self._lock:
            pair = self._pairs.get(loop)
            if pair is None:
                for old in [lp for lp in self._pairs if lp.is_closed()]:
                    del self._pairs[old]
                connect = self._connect or self._fast
                pair = Pair(connect("commands", self.timeout), connect("waits", self.timeout))
                self._pairs[loop] = pair
            return pair

    def _fast(self, role: Role, timeout: float) -> Transport:
        name = "taskit" if role == "commands" else "taskit-wait"
        return FastClient(self._locator_of(), name, timeout)

    def aim(self, key: str) -> None:
        """Serve the Cluster slot of ``key`` (the broker's hash tag; one slot for all keys)."""
        self._key = key
        if self._locator is not None:
            self._locator.aim(key)

    def _locator_of(self) -> Locator:
        """The URL read once (with its TLS context, which may load files)."""
        if self._locator is None:
            with self._lock:
                if self._locator is None:
                    try:
                        locator = locator_of(self._url)
                    except (OSError, ssl.SSLError, KeyError, ValueError) as exc:
                        raise ConfigurationError(
                            f"broker URL {redact_url(self._url)}: cannot use its TLS options: "
                            f"{exc!r}"
                        ) from None
                    locator.aim(self._key)
                    self._locator = locator
        return self._locator

    def blocking(self) -> Blocking | None:
        """The blocking client for any thread's calls (one connection shared by threads, its
        commands pipelined: ``transport.shared``), or None when ``connect`` replaces the fast
        transport."""
        if self._connect is not None:
            return None
        shared = self._shared
        if shared is None or self._pid != os.getpid():  # getpid: ~0.1 us, a sync call ~25 us
            with self._lock:
                if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                    self._pid, self._shared = os.getpid(), None
                    self.pool = BlockingPool(self._blocking_client)
                if self._shared is None:
                    self._shared = SharedClient(self._blocking_client(), self.pool)
                shared = self._shared
        return shared

    def blocking_clients(self) -> list[BlockingClient]:
        """The shared blocking connection (if made) and the pool's idle ones (for tests)."""
        shared = self._shared
        return ([] if shared is None else [shared.client]) + self.pool.idle()

    def _blocking_client(self) -> BlockingClient:
        return BlockingClient(self._locator_of(), timeout=self.timeout)

    async def guard(self, call: Awaitable[T]) -> T:
        """Await a transport call: ``BrokerAuthenticationError`` when Redis refuses the
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
        connection failure. Why: a connection whose server restarted may look alive until the
        loop reads its end, so the first command on it fails with nothing run; only a command
        that may run twice can be sent again. Only a failure that came at once is repeated: one
        that waited (a frozen or silent server) would wait again, and the caller would wait
        twice ``timeout``."""
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
        return await self.guard(make())

    def guard_blocking(self, call: Callable[[], T]) -> T:
        """``guard`` for a blocking call."""
        try:
            return call()
        except (redis.exceptions.RedisError, OSError) as exc:
            error = self._failed(exc)
            raise error from (exc if type(error) is BrokerError else None)

    def _failed(self, exc: BaseException) -> BrokerError:
        """``exc`` translated; an out-of-memory refusal is also reported to ``on_full``."""
        error = self._errors.translate(exc)
        if isinstance(error, BrokerOutOfMemoryError) and self.on_full is not None:
            self.on_full()
        return error

    async def close(self) -> None:
        """Close every loop's transports: this loop's now, a live other loop's on that loop."""
        with self._lock:
            pairs, self._pairs = self._pairs, {}
        self.pool.close()
        if self._shared is not None:
            self._shared.close()
        if self._locator is not None:
            await anyio.to_thread.run_sync(self._locator.close)
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, pair in pairs.items():
            for client in (pair.commands, pair.waits):
                if loop is here:
                    await client.aclose()
                elif not loop.is_closed() and loop.is_running():
                    done = asyncio.run_coroutine_threadsafe(_aclose(client), loop)
                    with anyio.move_on_after(_CLOSE_TIMEOUT):  # that loop may be busy or ending
                        await asyncio.wrap_future(done)


async def _aclose(client: Transport) -> Any:
    await client.aclose()
