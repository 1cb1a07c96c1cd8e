"""redis-py's asyncio client as a ``Transport``.

The broker itself always uses the fast transport (``fast``); this one lets tests run the same
broker on fakeredis (``over``) and on a real server through redis-py (``to_url``), so the two
transports are checked against each other.

Replies are raw, as the fast transport gives them: redis-py's reply conversions are switched
off for the wrapped client (``SET`` answers ``b"OK"``, ``CONFIG GET`` a flat list). Text that is
not valid UTF-8 (a damaged id read with ``surrogateescape``) is sent as the bytes it stood for,
as ``packing`` does. A failed handshake (AUTH, SELECT, CLIENT SETNAME) is a plain connection
error: the caller's command was not sent yet, whatever redis-py's message says.

On a cluster or Sentinel URL (``to_url``) the client is made for the server the URL's
``Locator`` names (``locate``) and made anew when it names another; a refusal (MOVED, READONLY,
a refused connection: ``errors.refusal_of``) is followed as the fast transport follows it, by
asking again and resending within the timeout (ASK is raised: the broker uses this transport in
tests only).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis.exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from taskit._urls import CLUSTER_SCHEMES, SENTINEL_SCHEMES
from taskit.broker.redis.errors import Refusal, refusal_of
from taskit.broker.redis.transport import Arg, Connect, Locator, Role, Transport
from taskit.broker.redis.transport.locate import locator_of
from taskit.broker.redis.transport.pacing import Pacing
from taskit.broker.redis.transport.target import Target

__all__ = ["RedisPy", "over", "to_url"]


class RedisPy:
    """The ``Transport`` over a redis-py asyncio client (which it owns and closes)."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        client.response_callbacks = {}  # raw replies, as every transport gives them

    async def execute(self, *args: Arg, wait: float = 0.0) -> Any:
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    def drop(self) -> None:
        """Nothing to do: redis-py disconnects a connection whose command was cancelled."""

    async def aclose(self) -> None:
        await self._client.aclose()


def over(make: Callable[[], Redis]) -> Connect:
    """A ``Connect`` that wraps a client from ``make`` (e.g. fakeredis) for every role."""

    def connect(role: Role, timeout: float) -> Transport:
        return RedisPy(make())

    return connect


def to_url(url: str) -> Connect:
    """A ``Connect`` of redis-py clients to ``url``, bounded as the fast transport is: connects
    and (for commands) replies by the broker's timeout, never retried (a command that may have
    run is never sent twice); a blocking wait's reply is bounded by the wait itself."""
    scheme = urlsplit(url).scheme
    if scheme in CLUSTER_SCHEMES or scheme in SENTINEL_SCHEMES:
        locator = locator_of(url)

        def located(role: Role, timeout: float) -> Transport:
            return _Followed(locator, url, role, timeout)

        return located

    def connect(role: Role, timeout: float) -> Transport:
        return RedisPy(_client(url, role, timeout))

    return connect


def _client(url: str, role: Role, timeout: float) -> Redis:
    return Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=None if role == "waits" else timeout,
        retry=Retry(NoBackoff(), 0),
        client_name="taskit",
        encoding_errors="surrogateescape",
        connection_class=_CLASSES[urlsplit(url).scheme],
    )


class _Followed:
    """A ``RedisPy`` to the server ``locator`` names, following refusals (module docstring)."""

    def __init__(self, locator: Locator, url: str, role: Role, timeout: float) -> None:
        self._locator, self._url, self._role, self._timeout = locator, url, role, timeout
        self._at: Target | None = None
        self._clients: dict[tuple[str, int], RedisPy] = {}

    async def execute(self, *args: Arg, wait: float = 0.0) -> Any:
        loop = asyncio.get_running_loop()
        pacing = Pacing(loop.time() + self._timeout)
        while True:
            try:
                return await (await self._current()).execute(*args, wait=wait)
            except rexc.RedisError as exc:
                refusal = refusal_of(exc)
                left = pacing.left(loop.time())
                if refusal is None or refusal.kind == "ASK" or not self._locator.follows(refusal):
                    raise
                if left <= 0:
                    raise
                with contextlib.suppress(rexc.ConnectionError):  # asked again next round
                    await self._locator.arefresh(refusal, self._at)
                if refusal.kind != "MOVED":
                    await asyncio.sleep(pacing.step(left))

    async def _current(self) -> RedisPy:
        """The client of the current server. One is kept per server, all closed by
        ``aclose``: a move must not close a client another caller's command is still on."""
        target = self._locator.current()
        if target is None:
            target = await self._locator.arefresh(_UNKNOWN, None)
        self._at = target
        where = (target.host, target.port)
        client = self._clients.get(where)
        if client is None:
            made = _client(_url_of(self._url, target), self._role, self._timeout)
            client = self._clients[where] = RedisPy(made)
        return client

    def drop(self) -> None:
        """Nothing to do: redis-py disconnects a connection whose command was cancelled."""

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def _url_of(url: str, target: Target) -> str:
    """A one-server URL for ``target`` with the login and options of a cluster or Sentinel URL
    (the sentinels' own options left out)."""
    parts = urlsplit(url)
    scheme = "rediss" if parts.scheme.startswith("rediss") else "redis"
    login = parts.netloc.rpartition("@")[0]
    host = f"[{target.host}]" if ":" in target.host else target.host
    query = "&".join(
        p for p in parts.query.split("&") if p and not p.startswith(("sentinel_", "db="))
    )
    where = f"{login}@{host}:{target.port}" if login else f"{host}:{target.port}"
    return f"{scheme}://{where}/{target.db}" + (f"?{query}" if query else "")


_UNKNOWN = Refusal("refused", text="not looked up yet")


class _HandshakeIsConnecting(AbstractConnection):
    """A connection whose failed handshake is a plain ``ConnectionError`` (see the module)."""

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().connect_check_health(*args, **kwargs)
        except (rexc.ConnectionError, rexc.TimeoutError) as exc:
            if isinstance(exc, rexc.AuthenticationError):
                raise
            raise rexc.ConnectionError(f"cannot connect: {exc}") from None


class _TCP(_HandshakeIsConnecting, Connection):
    pass


class _TLS(_HandshakeIsConnecting, SSLConnection):
    pass


class _Unix(_HandshakeIsConnecting, UnixDomainSocketConnection):
    pass


_CLASSES: dict[str, type[AbstractConnection]] = {"redis": _TCP, "rediss": _TLS, "unix": _Unix}
