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

Where a transport connects is a ``Locator``'s answer (``locate``): a fixed server, the node of a
Redis Cluster that serves the broker's slot, or the master a Sentinel set names. The fast and
blocking transports follow a refusal (``errors.refusal_of``: MOVED, ASK, READONLY, a refused
connection...) by asking the locator again and resending, within their timeout: such a reply
means the command did not run, so a resend cannot run it twice.

A transport is bound to the event loop it is first used on; the broker keeps two per loop
(``connections``): one for commands, one for blocking waits (a ``BLPOP`` holds its connection).

Every transport raises redis-py's exception types (``errors`` maps them once): a refused
connection, or one not made within the timeout, is ``redis.exceptions.ConnectionError`` (nothing
was sent); a command whose connection fails, or whose reply does not come in time, after it was
written is ``errors.ReplyLost`` on the fast transport (redis-py says so only in its messages,
which ``errors`` reads); an error reply is ``ResponseError`` or its kin (``NoScriptError``...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from taskit.broker.redis.errors import Refusal
    from taskit.broker.redis.transport.target import Target

__all__ = ["DEFAULT_TIMEOUT", "Arg", "Blocking", "Connect", "Locator", "Role", "Transport"]

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


class Blocking(Protocol):
    """What a sync enqueue needs of a blocking connection (``sync.BlockingClient``, or
    ``shared.SharedClient`` when threads share one): the ``Transport`` calls without a loop."""

    def execute(self, *args: Arg) -> Any:
        """Send one command and return its raw reply; error replies are raised."""
        ...

    def execute_then(
        self, args: Sequence[Arg], then: Sequence[Arg], wait: float
    ) -> tuple[Any, Any]:
        """``args``, then ``then`` right behind it on the same connection (``then`` may block
        ``wait`` seconds; its reply raw, an error reply a ``ResponseError`` instance)."""
        ...


class Locator(Protocol):
    """Which Redis server the broker's keys live on now (``locate``). Safe to share between
    threads and event loops; ``current`` is cheap (called on every command)."""

    def current(self) -> Target | None:
        """The server to talk to, as last found (None: not looked up yet: ``refresh``)."""
        ...

    def follows(self, refusal: Refusal) -> bool:
        """Whether a command refused so is sent again after a ``refresh`` (False: the refusal
        is raised, as from a single server that cannot be elsewhere)."""
        ...

    def node(self, host: str, port: int) -> Target:
        """The server at ``host:port`` with this locator's login and TLS (for ASK)."""
        ...

    def aim(self, key: str) -> None:
        """Serve ``key``'s slot (every key of the broker shares its hash tag)."""
        ...

    async def arefresh(self, refusal: Refusal, tried: Target | None) -> Target:
        """Look again after ``tried`` (the server that refused, None: none yet) refused; the
        server to use now. Returns at once when another caller already moved on from
        ``tried``. Raises ``redis.exceptions.ConnectionError`` when no one can say."""
        ...

    def refresh(self, refusal: Refusal, tried: Target | None) -> Target:
        """``arefresh`` for a thread without an event loop (blocking)."""
        ...

    def close(self) -> None:
        """Stop what runs in the background (Sentinel's ``+switch-master`` listener; nothing
        for the others). Blocking, briefly; the locator may be used again after."""
        ...


#: Makes one event loop's transport for a role, with the broker's timeout (seconds).
Connect = Callable[[Role, float], Transport]
