"""redis-py's asyncio client as a ``Transport``.

The broker itself always uses the fast transport (``fast``); this one lets tests run the same
broker on fakeredis (``over``) and on a real server through redis-py (``to_url``), so the two
transports are checked against each other.

Replies are raw, as the fast transport gives them: redis-py's reply conversions are switched
off for the wrapped client (``SET`` answers ``b"OK"``, ``CONFIG GET`` a flat list). Text that is
not valid UTF-8 (a damaged id read with ``surrogateescape``) is sent as the bytes it stood for,
as ``packing`` does. A failed handshake (AUTH, SELECT, CLIENT SETNAME) is a plain connection
error: the caller's command was not sent yet, whatever redis-py's message says.
"""

from __future__ import annotations

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

from taskit.broker.redis.transport import Arg, Connect, Role, Transport

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
    connection_class = _CLASSES[urlsplit(url).scheme]

    def connect(role: Role, timeout: float) -> Transport:
        return RedisPy(
            Redis.from_url(
                url,
                socket_connect_timeout=timeout,
                socket_timeout=None if role == "waits" else timeout,
                retry=Retry(NoBackoff(), 0),
                client_name="taskit",
                encoding_errors="surrogateescape",
                connection_class=connection_class,
            )
        )

    return connect


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
