"""The fast transport: a narrow, pipelined RESP2 connection with hiredis.

Why: every job crosses Redis in a script call (enqueue, reserve, settle), and redis-py's asyncio
client spends about 200 µs of CPU per command on this machine (pool checkout, timeouts, hooks),
four times what the same round trip costs over a bare asyncio connection. ``FastClient`` does
only what the broker needs: any command on one connection, many callers at once (replies come
back in the order commands went out), hiredis for packing and parsing, TLS by the URL's
``ssl_*`` options (``target``). The broker keeps one for commands and one for blocking waits per
event loop.

Errors are redis-py's exception types, so the broker maps them in one place: a refused
connection, or one not made and logged into within ``timeout``, is
``redis.exceptions.ConnectionError`` (nothing was sent); a command whose connection drops, or
whose reply does not come within ``timeout``, after it was written fails with ``ReplyLost`` (it
may have run, so it is never sent twice; the connection is dropped and the next call connects
anew). Error replies are ``ResponseError`` (or ``NoScriptError``, ``AuthenticationError``,
``NoPermissionError``, ``OutOfMemoryError``). A call made while the connection is known to be
down reconnects first.

Where it connects is its ``Locator``'s ``current()`` server (``locate``; a plain URL or
``Target``: that server, ``target.Fixed``). ``execute`` follows a refusal the locator follows
(MOVED, ASK, READONLY, a refused connection...: ``errors.refusal_of``): it asks the locator
again and resends, pausing between tries (not after MOVED or ASK, which name the server),
until ``timeout`` has passed since the refusal; then it raises the last refusal. ASK is
answered on a one-off connection to the server it names, with ``ASKING`` in front. A
connection whose server is no longer current is retired: it closes once the replies it owes
have come, so a command already sent there is never cut short by another's refusal. ``send``
(futures) does not follow: its caller reads the raw replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from typing import Any, cast

import redis.exceptions as rexc

from taskit.broker.redis.errors import Refusal, ReplyLost, error_of, refusal_of
from taskit.broker.redis.transport import DEFAULT_TIMEOUT, Arg, Locator
from taskit.broker.redis.transport.handshake import Handshake, error_for
from taskit.broker.redis.transport.pacing import Pacing
from taskit.broker.redis.transport.packing import pack
from taskit.broker.redis.transport.target import Fixed, Target
from taskit.broker.redis.transport.wire import TlsWire, Wire, retrieved

__all__ = ["FastClient"]

#: Seconds ``aclose`` waits for the aborted socket to be closed (one loop iteration, normally).
_CLOSE_LIMIT = 1.0


class FastClient:
    """The ``Transport`` (and ``Pipelined``) over one connection to a ``redis://``,
    ``rediss://`` (TLS) or ``unix://`` URL, a ``Target`` read from one, or the server a
    ``Locator`` names (module docstring).

    Bound to the event loop it is first used on (the broker keeps two per loop). ``timeout``
    (seconds) bounds connecting with its handshake (TLS included), every reply (see
    ``Wire``), and the following of a refusal.
    """

    def __init__(
        self,
        url: str | Target | Locator,
        client_name: str = "taskit",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if isinstance(url, str):
            url = Target.of(url)
        self._locator: Locator = Fixed(url) if isinstance(url, Target) else url
        self._at: Target | None = None  # the server of the connection (being) made
        self._name = client_name
        self._timeout = timeout
        self._protocol: Wire | None = None
        self._connecting: asyncio.Lock | None = None
        self._checks = Handshake()
        #: The server's id of the current connection (``CLIENT ID``), for ``CLIENT UNBLOCK``.
        self.client_id: int | None = None

    async def execute(self, *args: Arg, wait: float = 0.0) -> Any:
        """Send one command and return its reply; raises redis-py exceptions, ``ReplyLost``
        when the connection drops or owes a reply past the timeout (plus ``wait``, the seconds
        a blocking command may block). A refusal is followed (module docstring)."""
        try:
            protocol = await self._live()
        except rexc.ConnectionError as exc:
            return await self._follow(args, wait, exc)
        try:
            reply = await protocol.send(pack(args), wait)
        except ReplyLost:
            raise
        except rexc.ConnectionError as exc:  # never sent (the connection failed first)
            return await self._follow(args, wait, exc)
        if isinstance(reply, rexc.ResponseError):
            return await self._follow(args, wait, error_for(reply, args))
        return reply

    async def execute_then(
        self, args: Sequence[Arg], then: Sequence[Arg], wait: float
    ) -> tuple[Any, Any]:
        """``args``, then ``then`` right behind it on the same connection (one write, one round
        trip); both replies. ``then`` may block ``wait`` seconds on the server: a ``WAIT`` for
        replicas, which counts the writes of its own connection only, so the two never go
        apart. ``args`` is as ``execute`` (errors raised, a refusal followed: both sent again);
        ``then``'s reply is raw, an error reply a ``ResponseError`` instance, for the caller."""
        try:
            protocol = await self._live()
        except rexc.ConnectionError as exc:
            followed = await self._follow(args, 0.0, exc, (then, wait))
            return cast(tuple[Any, Any], followed)
        try:
            first, second = protocol.send_then(pack(args) + pack(then), wait)
            reply = await first
        except ReplyLost:
            raise
        except rexc.ConnectionError as exc:  # never sent (the connection failed first)
            followed = await self._follow(args, 0.0, exc, (then, wait))
            return cast(tuple[Any, Any], followed)
        if isinstance(reply, rexc.ResponseError):
            followed = await self._follow(args, 0.0, error_for(reply, args), (then, wait))
            return cast(tuple[Any, Any], followed)
        return reply, await second

    async def _follow(
        self,
        args: Sequence[Arg],
        wait: float,
        exc: rexc.RedisError,
        then: tuple[Sequence[Arg], float] | None = None,
    ) -> Any:
        """Follow the refusal ``exc`` (asking the locator, resending ``args``, and ``then``'s
        command right behind it if given) until a reply that is not a refusal, or ``timeout``;
        raises ``exc`` if it is not one to follow. The reply, or with ``then`` both replies."""
        refusal = refusal_of(exc)
        if refusal is None or not self._locator.follows(refusal):
            raise exc
        loop = asyncio.get_running_loop()
        pacing = Pacing(loop.time() + self._timeout)
        while True:
            after: Any = None
            try:
                target = await self._locator.arefresh(refusal, self._at)
                if refusal.kind == "ASK" and refusal.host and refusal.port:
                    node = self._locator.node(refusal.host, refusal.port)
                    reply, after = await self._asking(node, args, then)
                elif then is None:
                    protocol = await self._live(target)
                    reply = await protocol.send(pack(args), wait)
                else:
                    protocol = await self._live(target)
                    first, second = protocol.send_then(pack(args) + pack(then[0]), then[1])
                    reply = await first
                    if not isinstance(reply, rexc.ResponseError):
                        after = await second
            except rexc.ConnectionError as failed:
                exc = failed
            else:
                if not isinstance(reply, rexc.ResponseError):
                    return reply if then is None else (reply, after)
                exc = error_for(reply, args)
            refusal = refusal_of(exc)
            left = pacing.left(loop.time())
            if refusal is None or left <= 0:
                raise exc
            if refusal.kind not in ("MOVED", "ASK"):
                await asyncio.sleep(pacing.step(left))

    async def _reach(self, exc: rexc.ConnectionError) -> Wire:
        """A connection after the refused connect ``exc``, the locator asked again between
        tries, within ``timeout``; raises ``exc`` (or the last failure) if none is made."""
        refusal = refusal_of(exc)
        if refusal is None or not self._locator.follows(refusal):
            raise exc
        loop = asyncio.get_running_loop()
        pacing = Pacing(loop.time() + self._timeout)
        while True:
            try:
                return await self._live(await self._locator.arefresh(refusal, self._at))
            except rexc.ConnectionError as failed:
                refusal, left = refusal_of(failed), pacing.left(loop.time())
                if refusal is None or left <= 0:
                    raise
            await asyncio.sleep(pacing.step(left))

    async def relocate(self, reply: Any) -> bool:
        """For a caller of ``send`` whose raw ``reply`` is a refusal this client follows: ask
        the locator again (a failed lookup is left for the next try) and return True; the
        caller sends again. False for any other reply (ASK too: only ``execute`` follows it)."""
        if not isinstance(reply, rexc.ResponseError):
            return False
        refusal = refusal_of(error_of(reply))
        if refusal is None or refusal.kind == "ASK" or not self._locator.follows(refusal):
            return False
        with contextlib.suppress(rexc.ConnectionError):
            await self._locator.arefresh(refusal, self._at)
        return True

    async def _asking(
        self, node: Target, args: Sequence[Arg], then: tuple[Sequence[Arg], float] | None
    ) -> tuple[Any, Any]:
        """``args`` (and ``then``'s command behind it) run once on ``node`` (an ASK redirect:
        the slot is migrating there), on a one-off connection; the raw replies (None for
        ``then``'s without it). Only ``args`` may block, so ``then``'s wait is not added to its
        reply's time: a ``WAIT`` there is bounded by the broker's timeout."""
        client = FastClient(node, self._name, self._timeout)
        try:
            futures = await client.send(("ASKING",), args, *(() if then is None else (then[0],)))
            reply = await futures[1]
            return reply, (await futures[2] if then is not None else None)
        finally:
            await client.aclose()

    async def send(self, *commands: Sequence[Arg], wait: float = 0.0) -> list[asyncio.Future[Any]]:
        """Write ``commands`` back to back on the connection and return a future per reply, in
        order (the first may block ``wait`` seconds). A reply is the raw value, or a
        ``ResponseError`` instance for an error reply (see ``raise_for``): the caller owns the
        futures and decides what a cut-short wait means. A refused connection is followed
        (nothing was sent yet); refusals in the replies are the caller's (``relocate``)."""
        try:
            protocol = await self._live()
        except rexc.ConnectionError as exc:
            protocol = await self._reach(exc)
        packed = b"".join(pack(command) for command in commands)
        futures = protocol.send_all(packed, [wait] + [0.0] * (len(commands) - 1))
        for future in futures:  # a reply nobody reads (a dropped wait) must not be logged
            future.add_done_callback(retrieved)
        return futures

    @staticmethod
    def raise_for(reply: Any) -> Any:
        """``reply`` itself, or raise the redis-py exception of an error reply."""
        if isinstance(reply, rexc.ResponseError):
            raise error_of(reply)
        return reply

    async def _live(self, target: Target | None = None) -> Wire:
        """The open connection to the locator's current server (or ``target``), connecting
        first if there is none (or it was lost, or goes elsewhere)."""
        protocol = self._protocol
        if target is None:
            target = self._locator.current()
        if protocol is None or protocol.lost is not None or self._at is not target:
            protocol = await self._connect(target)
        return protocol

    async def _connect(self, target: Target | None) -> Wire:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if target is None:  # not looked up yet (a cluster or Sentinel URL)
                target = await self._locator.arefresh(_UNKNOWN, None)
            old = self._protocol
            if old is not None and old.lost is None:
                if self._at is target:
                    return old  # another caller connected while this one waited
                self._protocol = None
                old.retire()  # its replies still come to their callers
            self._at = target
            loop = asyncio.get_running_loop()
            protocol: Wire | None = None
            try:
                async with asyncio.timeout(self._timeout):  # connect and handshake alike
                    made = functools.partial(Wire, self._timeout)
                    if target.unix is not None:
                        _, protocol = await loop.create_unix_connection(made, target.unix)
                    elif target.tls is not None:
                        _, tls = await loop.create_connection(
                            functools.partial(TlsWire, self._timeout, target.tls,
                                              target.host),
                            target.host, target.port,
                        )  # fmt: skip
                        protocol = tls
                        await cast(asyncio.Future[None], tls.ready)
                    else:
                        _, protocol = await loop.create_connection(made, target.host, target.port)
                    await self._handshake(protocol, target)
            except (OSError, TimeoutError, rexc.ConnectionError) as exc:
                # The caller's command was not sent: a plain connection error, never ReplyLost.
                if protocol is not None:
                    protocol.close()
                if isinstance(exc, rexc.AuthenticationError):
                    raise
                why = exc if str(exc) else f"no answer within {self._timeout:g} s"
                raise rexc.ConnectionError(
                    f"cannot connect to Redis at {target.where()}: {why}"
                ) from None
            except BaseException:
                if protocol is not None:
                    protocol.close()
                raise
            self._protocol = protocol
            return protocol

    async def _handshake(self, protocol: Wire, target: Target) -> None:
        for command in target.handshake(self._name):
            self._checks.check(command, await protocol.send(pack(command)), target.where())
        # A server (or proxy) that refuses CLIENT ID only loses the early unblock.
        reply = await protocol.send(pack(("CLIENT", "ID")))
        self.client_id = reply if isinstance(reply, int) else None

    def drop(self) -> None:
        """Close the connection now (a later call reconnects): for a command that was cut
        short, whose reply would otherwise still be owed on this connection."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close()

    async def aclose(self) -> None:
        protocol = self._protocol
        self.drop()
        if protocol is not None:  # closed when this returns, not a loop iteration later
            await protocol.wait_closed(_CLOSE_LIMIT)


#: The refusal of a connection not made yet: look the server up.
_UNKNOWN = Refusal("refused", text="not looked up yet")
