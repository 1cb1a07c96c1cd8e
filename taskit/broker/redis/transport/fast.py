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
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
import redis.exceptions as rexc

from taskit.broker.redis.errors import Refusal, ReplyLost, error_of, refusal_of
from taskit.broker.redis.transport import DEFAULT_TIMEOUT, Arg, Locator
from taskit.broker.redis.transport.handshake import Handshake, error_for
from taskit.broker.redis.transport.pacing import Pacing
from taskit.broker.redis.transport.packing import pack
from taskit.broker.redis.transport.target import Fixed, Target

__all__ = ["FastClient"]

#: Bytes of plain text read from TLS at a time.
_READ_SIZE = 262_144
#: Seconds ``aclose`` waits for the aborted socket to be closed (one loop iteration, normally).
_CLOSE_LIMIT = 1.0


class _Protocol(asyncio.Protocol):
    """One connection: futures wait in command order; replies resolve them in the same order.

    A watchdog bounds the wait for replies: when the oldest command still owed a reply was sent
    more than ``timeout`` seconds ago (plus the wait a blocking command was allowed), and no
    reply at all came for ``timeout`` seconds, the connection is aborted and every waiting
    future fails with ``ReplyLost``. One timer per connection, not one per call: the hot path
    only reads the loop's clock.
    """

    def __init__(self, timeout: float) -> None:
        self._reader = hiredis.Reader(replyError=rexc.ResponseError)
        # (future, loop time by which its reply is due)
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._progress = 0.0  # loop time of the last reply, or of the first send after idling
        self.lost: BaseException | None = None
        self._gone: asyncio.Future[None] | None = None  # done once the socket is closed
        self._retired = False  # no longer used for new commands: close once nothing is owed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP and Unix transports are not asyncio.Transport subclasses, only alike:
        # an isinstance check here failed every connection made on uvloop.
        self._transport = cast(asyncio.Transport, transport)
        self._write: Callable[[bytes], None] = self._transport.write
        # Kept: on Python 3.11 every get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._gone = self._loop.create_future()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        got = False
        while (reply := self._reader.gets()) is not False:
            future, _ = self._waiting.popleft()
            got = True
            if not future.done():  # a caller that was cancelled no longer waits
                future.set_result(reply)
        if got and self._loop is not None:
            self._progress = self._loop.time()
        if self._retired and not self._waiting:
            self.close()

    def retire(self) -> None:
        """Take no new command; close once every reply owed has come (or the watchdog
        gives up on it)."""
        self._retired = True
        if not self._waiting:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.lost is None:
            # Every waiting future belongs to a command already written: its outcome is unknown.
            self.lost = ReplyLost(f"connection to Redis lost before the reply: {exc or 'closed'}")
        self._fail_waiting()
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def _fail_waiting(self) -> None:
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(cast(BaseException, self.lost))

    def send(self, packed: bytes, wait: float = 0.0) -> asyncio.Future[Any]:
        """Write a command; its reply's future. ``wait``: seconds the command may block on the
        server (BLPOP) before its reply is late."""
        loop = self._loop
        if self.lost is not None or self._transport is None or loop is None:
            # Not written: a plain connection error (nothing ran), never ReplyLost.
            raise rexc.ConnectionError("connection to Redis is closed")
        future: asyncio.Future[Any] = loop.create_future()
        now = loop.time()
        if not self._waiting:
            self._progress = now  # idle until now: no reply was owed
        due = now + self._timeout + wait
        self._waiting.append((future, due))
        if self._timer is None:
            self._timer = loop.call_at(due, self._watch)
        self._write(packed)
        return future

    def send_then(self, packed: bytes, wait: float) -> tuple[asyncio.Future[Any], ...]:
        """Write ``packed``, two commands back to back (one write), and return the future of
        each reply; the second may block ``wait`` seconds on the server (``WAIT``)."""
        loop = self._loop
        if self.lost is not None or self._transport is None or loop is None:
            raise rexc.ConnectionError("connection to Redis is closed")
        first: asyncio.Future[Any] = loop.create_future()
        second: asyncio.Future[Any] = loop.create_future()
        second.add_done_callback(_retrieved)  # unread when the first fails
        now = loop.time()
        if not self._waiting:
            self._progress = now
        self._waiting.append((first, now + self._timeout))
        self._waiting.append((second, now + self._timeout + wait))
        if self._timer is None:
            self._timer = loop.call_at(now + self._timeout, self._watch)
        self._write(packed)
        return first, second

    def _watch(self) -> None:
        """The watchdog's tick: abort a connection that owes a reply past its due time."""
        self._timer = None
        if not self._waiting or self.lost is not None or self._loop is None:
            return
        due = max(self._waiting[0][1], self._progress + self._timeout)
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._watch)
            return
        self.lost = ReplyLost(f"no reply from Redis within {self._timeout:g} s")
        self._fail_waiting()
        if self._transport is not None:
            self._transport.abort()  # a reply still owed must never answer a later command

    def close(self) -> None:
        """Close the connection at once. ``abort``, not ``close``: nothing written is still
        wanted, and the socket must be closed when this returns (asyncio's TLS transport's
        ``close`` kept it open until the server answered its close_notify, so an event loop
        that ended first leaked it)."""
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self, limit: float) -> None:
        """Wait (at most ``limit`` seconds) until the socket is closed, after ``close``."""
        if self._gone is not None and not self._gone.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit):
                    await asyncio.shield(self._gone)


class _TlsProtocol(_Protocol):
    """``_Protocol`` over TLS done here, on a plain TCP transport, with ``ssl.MemoryBIO``.

    Why: asyncio's own TLS layer (``sslproto``) adds some thirty Python calls to a round trip
    (a profile of single enqueues, benchmarks/tls.py); here a command costs about fifteen, of
    which one ``SSLObject.write`` and one ``read``, and the connection is otherwise the plain
    one. ``ready`` is done once the handshake is (its error, such as
    ``ssl.SSLCertVerificationError``, if it failed).
    """

    def __init__(self, timeout: float, context: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__(timeout)
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing,
                                     server_hostname=server_hostname)  # fmt: skip
        self.ready: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._raw_write = self._write
        self._write = self._write_tls
        self.ready = cast(asyncio.AbstractEventLoop, self._loop).create_future()
        self._shake()

    def _shake(self) -> None:
        """One step of the handshake, with what has come in so far."""
        ready = cast(asyncio.Future[None], self.ready)
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:  # a refused certificate too
            self._flush()  # the alert, for the server's log
            if not ready.done():  # (cancelled: the connect gave up)
                ready.set_exception(exc)
            cast(asyncio.Transport, self._transport).abort()
            return
        self._flush()
        if not ready.done():
            ready.set_result(None)

    def _flush(self) -> None:
        if self._outgoing.pending:
            self._raw_write(self._outgoing.read())

    def _write_tls(self, data: bytes) -> None:
        self._tls.write(data)
        self._raw_write(self._outgoing.read())

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        ready = cast(asyncio.Future[None], self.ready)
        if not ready.done():
            self._shake()
        if not ready.done() or ready.cancelled() or ready.exception() is not None:
            return
        plain = []
        try:
            while chunk := self._tls.read(_READ_SIZE):
                plain.append(chunk)
        except ssl.SSLWantReadError:
            pass  # all of it read (or a record with no data: a session ticket)
        except ssl.SSLError as exc:  # close_notify (SSLZeroReturnError) or a broken record
            self.lost = self.lost or ReplyLost(f"TLS connection to Redis ended: {exc}")
            cast(asyncio.Transport, self._transport).abort()
            return
        self._flush()  # a post-handshake message may want an answer (a TLS 1.3 KeyUpdate)
        if plain:
            super().data_received(b"".join(plain) if len(plain) > 1 else plain[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionResetError(f"closed in the TLS handshake: {exc}"))
        super().connection_lost(exc)


class FastClient:
    """The ``Transport`` (and ``Pipelined``) over one connection to a ``redis://``,
    ``rediss://`` (TLS) or ``unix://`` URL, a ``Target`` read from one, or the server a
    ``Locator`` names (module docstring).

    Bound to the event loop it is first used on (the broker keeps two per loop). ``timeout``
    (seconds) bounds connecting with its handshake (TLS included), every reply (see
    ``_Protocol``), and the following of a refusal.
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
        self._protocol: _Protocol | None = None
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
        reply = await protocol.send(pack(args), wait)
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
        first, second = protocol.send_then(pack(args) + pack(then), wait)
        reply = await first
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

    async def _reach(self, exc: rexc.ConnectionError) -> _Protocol:
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
        futures = [protocol.send(pack(command), wait if i == 0 else 0.0)
                   for i, command in enumerate(commands)]  # fmt: skip
        for future in futures:  # a reply nobody reads (a dropped wait) must not be logged
            future.add_done_callback(_retrieved)
        return futures

    @staticmethod
    def raise_for(reply: Any) -> Any:
        """``reply`` itself, or raise the redis-py exception of an error reply."""
        if isinstance(reply, rexc.ResponseError):
            raise error_of(reply)
        return reply

    async def _live(self, target: Target | None = None) -> _Protocol:
        """The open connection to the locator's current server (or ``target``), connecting
        first if there is none (or it was lost, or goes elsewhere)."""
        protocol = self._protocol
        if target is None:
            target = self._locator.current()
        if protocol is None or protocol.lost is not None or self._at is not target:
            protocol = await self._connect(target)
        return protocol

    async def _connect(self, target: Target | None) -> _Protocol:
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
            protocol: _Protocol | None = None
            try:
                async with asyncio.timeout(self._timeout):  # connect and handshake alike
                    made = functools.partial(_Protocol, self._timeout)
                    if target.unix is not None:
                        _, protocol = await loop.create_unix_connection(made, target.unix)
                    elif target.tls is not None:
                        _, tls = await loop.create_connection(
                            functools.partial(_TlsProtocol, self._timeout, target.tls,
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

    async def _handshake(self, protocol: _Protocol, target: Target) -> None:
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


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
