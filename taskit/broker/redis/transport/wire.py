"""One connection of the fast transport (``fast``): an asyncio protocol that writes commands and
hands each reply to its caller, in order (RESP replies come in the order commands went out).

Automatic pipelining: a command issued while the connection owes no reply is written at once
(a lone caller pays no added tick, no timer); one issued while replies are owed joins the
commands held for this loop iteration, and all of them go out in one write when the loop next
runs its ready callbacks (``call_soon``). So 64 request handlers enqueueing at the same moment
cost one ``send`` system call, and one read on the server, instead of 64, and each still gets
its own reply or error. A held command that never went out (its connection failed first) fails
with ``redis.exceptions.ConnectionError`` (nothing was sent: safe to send again); a written one
with ``ReplyLost`` (it may have run).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
import redis.exceptions as rexc

from taskit.broker.redis.errors import Dropped, ReplyLost

__all__ = ["TlsWire", "Wire", "retrieved"]

#: Bytes of plain text read from TLS at a time.
_READ_SIZE = 262_144


class Wire(asyncio.Protocol):
    """One connection: futures wait in command order; replies resolve them in the same order.

    Commands are written at once when nothing is owed, else held and written together at the
    next turn of the loop (module docstring). A watchdog bounds the wait for replies: when the
    oldest command still owed a reply was sent more than ``timeout`` seconds ago (plus the wait
    a blocking command was allowed), and no reply at all came for ``timeout`` seconds, the
    connection is aborted and every waiting future fails (``ReplyLost``; a held one
    ``ConnectionError``). One timer per connection, not one per call: the hot path only reads
    the loop's clock.
    """

    def __init__(self, timeout: float) -> None:
        self._reader = hiredis.Reader(replyError=rexc.ResponseError)
        # (future, loop time by which its reply is due); the last ``_held_count`` are held
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._held: list[bytes] = []  # packed commands not written yet, in order
        self._held_count = 0  # commands in ``_held`` (an item may hold several)
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._progress = 0.0  # loop time of the last reply, or of the first send after idling
        self.lost: BaseException | None = None
        self._gone: asyncio.Future[None] | None = None  # done once the socket is closed
        self._retired = False  # no longer used for new commands: close once nothing is owed
        self._dropped = False  # closed by ``close`` (not by the server, nor the watchdog)
        #: Writes so far (each a ``send`` of one or more commands), for tests and benchmarks.
        self.writes = 0

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
            # Every written command's outcome is unknown (held ones were never sent).
            lost = Dropped if self._dropped else ReplyLost
            self.lost = lost(f"connection to Redis lost before the reply: {exc or 'closed'}")
        self._fail_waiting()
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def _fail_waiting(self) -> None:
        """Fail every waiting future: a written command's with ``lost``, a held one's with a
        ``ConnectionError`` (it was never sent)."""
        written = len(self._waiting) - self._held_count
        self._held.clear()
        self._held_count = 0
        unsent = rexc.ConnectionError("connection to Redis lost before the command was sent")
        for i in range(len(self._waiting)):
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(cast(BaseException, self.lost) if i < written else unsent)

    def _ready(self) -> asyncio.AbstractEventLoop:
        """The loop, for a new command; ``ConnectionError`` if the connection is closed."""
        loop = self._loop
        if self.lost is not None or self._transport is None or loop is None:
            # Not written: a plain connection error (nothing ran), never ReplyLost.
            raise rexc.ConnectionError("connection to Redis is closed")
        return loop

    def send(self, packed: bytes, wait: float = 0.0) -> asyncio.Future[Any]:
        """Write a command (now, or with the others of this loop turn); its reply's future.
        ``wait``: seconds the command may block on the server (BLPOP) before its reply is
        late."""
        loop = self._ready()
        future: asyncio.Future[Any] = loop.create_future()
        now = loop.time()
        idle = not self._waiting
        if idle:
            self._progress = now  # idle until now: no reply was owed
        due = now + self._timeout + wait
        self._waiting.append((future, due))
        if self._timer is None:
            self._timer = loop.call_at(due, self._watch)
        if idle:  # a lone caller: written at once
            self.writes += 1
            self._write(packed)
        else:
            self._hold(loop, packed, 1)
        return future

    def send_all(self, packed: bytes, waits: Sequence[float]) -> list[asyncio.Future[Any]]:
        """Write ``packed``, one command per item of ``waits`` back to back, now (with any
        commands held for this loop turn in front of it: one write), and return the future of
        each reply; each command may block its ``waits`` item's seconds on the server.
        Never held to the next loop turn, even on a connection already closing: its callers
        own the futures and take a failure of the connection as "the outcome is unknown"
        (``ReplyLost``), never as "not sent", which they would report as "Redis cannot be
        reached" where the next call would find the new master."""
        loop = self._ready()
        now = loop.time()
        idle = not self._waiting
        if idle:
            self._progress = now
        futures: list[asyncio.Future[Any]] = []
        for wait in waits:
            future: asyncio.Future[Any] = loop.create_future()
            self._waiting.append((future, now + self._timeout + wait))
            futures.append(future)
        if self._timer is None:
            self._timer = loop.call_at(now + self._timeout, self._watch)
        if idle:
            self.writes += 1
            self._write(packed)
        else:
            self._hold(loop, packed, len(futures))
            self._flush(closing_too=True)
        return futures

    def send_then(
        self, packed: bytes, wait: float
    ) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
        """``send_all`` of two commands, the second of which may block ``wait`` seconds on the
        server (``WAIT``); its reply is not logged if nobody reads it (the first failed)."""
        first, second = self.send_all(packed, (0.0, wait))
        second.add_done_callback(retrieved)
        return first, second

    def _hold(self, loop: asyncio.AbstractEventLoop, packed: bytes, count: int) -> None:
        """Keep ``packed`` (``count`` commands) for this loop turn's one write."""
        if not self._held:
            loop.call_soon(self._flush)
        self._held.append(packed)
        self._held_count += count

    def _flush(self, closing_too: bool = False) -> None:
        """Write every held command at once (in the order they were issued). On a closing
        connection nothing is written (``connection_lost`` fails them as never sent), unless
        ``closing_too``: then they are handed to the closing transport as a write before this
        change was (it drops them), and fail as written (``ReplyLost``), their outcome unknown."""
        held = self._held
        if not held:  # failed meanwhile (``_fail_waiting``)
            return
        transport = self._transport
        if self.lost is not None or transport is None:
            return
        if transport.is_closing() and not closing_too:
            return  # closing: ``connection_lost`` fails them as never sent
        self._held = []
        self._held_count = 0
        self.writes += 1
        self._write(held[0] if len(held) == 1 else b"".join(held))

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
        that ended first leaked it). The replies still owed fail with ``Dropped``."""
        self._dropped = True
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self, limit: float) -> None:
        """Wait (at most ``limit`` seconds) until the socket is closed, after ``close``."""
        if self._gone is not None and not self._gone.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit):
                    await asyncio.shield(self._gone)


class TlsWire(Wire):
    """``Wire`` over TLS done here, on a plain TCP transport, with ``ssl.MemoryBIO``.

    Why: asyncio's own TLS layer (``sslproto``) adds some thirty Python calls to a round trip
    (a profile of single enqueues, benchmarks/tls.py); here a command costs about fifteen, of
    which one ``SSLObject.write`` and one ``read``, and the connection is otherwise the plain
    one (commands held for a loop turn go out as one TLS record). ``ready`` is done once the
    handshake is (its error, such as ``ssl.SSLCertVerificationError``, if it failed).
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
            self._flush_tls()
            return
        except ssl.SSLError as exc:  # a refused certificate too
            self._flush_tls()  # the alert, for the server's log
            if not ready.done():  # (cancelled: the connect gave up)
                ready.set_exception(exc)
            cast(asyncio.Transport, self._transport).abort()
            return
        self._flush_tls()
        if not ready.done():
            ready.set_result(None)

    def _flush_tls(self) -> None:
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
        self._flush_tls()  # a post-handshake message may want an answer (a TLS 1.3 KeyUpdate)
        if plain:
            super().data_received(b"".join(plain) if len(plain) > 1 else plain[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionResetError(f"closed in the TLS handshake: {exc}"))
        super().connection_lost(exc)


def retrieved(future: asyncio.Future[Any]) -> None:
    """A done callback: mark the future's exception retrieved (a reply nobody reads, such as a
    dropped wait's, must not be logged as never retrieved)."""
    if not future.cancelled():
        future.exception()
