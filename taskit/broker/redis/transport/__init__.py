"""How the Redis broker talks to Redis: one ``Transport`` contract, two implementations.

* ``fast.FastClient`` (with ``target`` and ``packing``): one pipelined asyncio connection with
  hiredis, for ``redis://``, ``rediss://`` (TLS) and ``unix://`` alike. What every broker uses.
  Only it can also write several commands back to back and hand out their replies as futures
  (``send``): a reserve sent right behind its ``BLPOP``, and a reply salvaged after its caller
  was cancelled (``wait``); the broker checks for it where it does so.
* ``redispy.RedisPy``: redis-py's asyncio client behind the same contract. Tests use it to run
  the broker on fakeredis, and on a real server to check the two transports agree.
* ``sync.BlockingClient``: the fast transport's blocking twin, for enqueues from threads
  without an event loop.

A transport is bound to the event loop it is first used on; the broker keeps two per loop
(``connections``): one for commands, one for blocking waits (a ``BLPOP`` holds its connection).

Every transport raises redis-py's exception types (``errors`` maps them once): a refused
connection, or one not made within the timeout, is ``redis.exceptions.ConnectionError`` (nothing
was sent); a command whose connection fails, or whose reply does not come in time, after it was
written is ``errors.ReplyLost`` on the fast transport (redis-py says so only in its messages,
which ``errors`` reads); an error reply is ``ResponseError`` or its kin (``NoScriptError``...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

__all__ = ["DEFAULT_TIMEOUT", "Arg", "Connect", "Role", "Transport"]

#: Seconds a connect (with its handshake) or a command's reply may take (``broker_timeout``).
DEFAULT_TIMEOUT = 5.0

#: One argument of a command.
Arg = str | bytes | int | float

#: What a transport is for: ``commands`` (scripts and plain commands; every reply bounded by the
#: broker's timeout) or ``waits`` (blocking ``BLPOP`` waits, bounded by their own length).
Role = Literal["commands", "waits"]


class Transport(Protocol):
    """What the broker needs of a connection to Redis."""

    async def execute(self, *args: Arg, wait: float = 0.0) -> Any:
        """Send one command and return its raw RESP2 reply (bytes, int, None or a list of
        them; never decoded to text or converted). ``wait``: seconds the command may block on
        the server (``BLPOP``) before its reply is late. Error replies are raised."""
        ...

    def drop(self) -> None:
        """Drop the connection now (the next command connects anew): for a blocking command
        cut short, whose reply would otherwise still be owed on it."""
        ...

    async def aclose(self) -> None:
        """Close the connection (it may be used again: it reconnects)."""
        ...


#: Makes one event loop's transport for a role, with the broker's timeout (seconds).
Connect = Callable[[Role, float], Transport]
