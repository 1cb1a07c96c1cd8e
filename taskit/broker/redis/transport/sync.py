"""A blocking RESP connection for synchronous enqueues (``enqueue_sync`` from a Flask view).

Without it a sync enqueue crosses to the App's loop thread and back, which costs more than the
round trip to Redis itself. ``BlockingClient`` is one socket, used by one thread at a time, with
hiredis for packing and parsing. It speaks to ``redis://``, ``rediss://`` (TLS, as ``target``
reads the URL) and ``unix://`` URLs. ``BlockingPool`` lends them to threads: a web server that
starts a thread per request reuses one connection, not a connection (and, over TLS, a
handshake, ~1 ms of CPU on each side) per request.

Errors are redis-py's exception types, as in ``_resp``: a refused connection, or one not made
within ``timeout``, is ``redis.exceptions.ConnectionError`` (nothing was sent); a command whose
connection fails, or whose reply does not come within ``timeout``, after it was written raises
``ReplyLost`` (it may have run, so it is never sent again; the next call connects anew). Error
replies are ``ResponseError`` and its kin. A refusal is followed as the fast transport does
(``fast``: the locator asked again, the command resent, within ``timeout``).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import hiredis
import redis.exceptions as rexc

from taskit.broker.redis.errors import Refusal, ReplyLost, refusal_of
from taskit.broker.redis.transport import DEFAULT_TIMEOUT, Arg, Locator
from taskit.broker.redis.transport.handshake import Handshake, error_for
from taskit.broker.redis.transport.pacing import Pacing
from taskit.broker.redis.transport.packing import pack
from taskit.broker.redis.transport.target import Fixed, Target
from taskit.broker.redis.transport.tlsbio import TlsSocket

__all__ = ["BlockingClient", "BlockingPool"]

#: Idle connections a pool keeps; one returned beyond it is closed.
_KEEP = 32


class BlockingClient:
    """Commands over one blocking connection; not for concurrent use from several threads.
    ``timeout`` (seconds) bounds connecting, and each send and reply."""

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
        self._sock: socket.socket | None = None  # the TCP or Unix socket itself
        # What writes and reads through it: the socket's own, or its TLS layer's (``tlsbio``).
        self._send: Callable[[bytes], None] = _nothing_sent
        self._recv: Callable[[int], bytes] = _nothing_read
        self._reader = hiredis.Reader(replyError=rexc.ResponseError)
        self._poll = select.poll()
        self._checks = Handshake()

    def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply; raises redis-py exceptions. A refusal is
        followed (module docstring)."""
        try:
            reply = self._round_trip(self._live(), pack(args))
        except rexc.ConnectionError as exc:
            return self.follow(args, exc)
        if isinstance(reply, rexc.ResponseError):
            return self.follow(args, error_for(reply, args))
        return reply

    def execute_then(
        self, args: Sequence[Arg], then: Sequence[Arg], wait: float
    ) -> tuple[Any, Any]:
        """``args``, then ``then`` right behind it on the same connection (one write, one round
        trip); both replies, as ``FastClient.execute_then`` (``then`` may block ``wait``
        seconds; its reply is raw; ``args`` is as ``execute``)."""
        try:
            reply, after = self._round_trip(self._live(), pack(args) + pack(then), wait)
        except rexc.ConnectionError as exc:
            return cast(tuple[Any, Any], self.follow(args, exc, (then, wait)))
        if isinstance(reply, rexc.ResponseError):
            return cast(tuple[Any, Any], self.follow(args, error_for(reply, args), (then, wait)))
        return reply, after

    def follows(self, exc: rexc.RedisError) -> bool:
        """Whether ``follow`` would follow ``exc`` (a refusal its locator follows) rather than
        raise it at once."""
        refusal = refusal_of(exc)
        return refusal is not None and self._locator.follows(refusal)

    def follow(
        self,
        args: Sequence[Arg],
        exc: rexc.RedisError,
        then: tuple[Sequence[Arg], float] | None = None,
    ) -> Any:
        """Follow the refusal ``exc`` as ``FastClient._follow`` does: the reply, or with
        ``then`` (sent right behind ``args``) both replies."""
        refusal = refusal_of(exc)
        if refusal is None or not self._locator.follows(refusal):
            raise exc
        pacing = Pacing(time.monotonic() + self._timeout)
        while True:
            after: Any = None
            try:
                target = self._locator.refresh(refusal, self._at)
                if refusal.kind == "ASK" and refusal.host and refusal.port:
                    node = self._locator.node(refusal.host, refusal.port)
                    reply, after = self._asking(node, args, then)
                elif then is None:
                    reply = self._round_trip(self._live(target), pack(args))
                else:
                    packed = pack(args) + pack(then[0])
                    reply, after = self._round_trip(self._live(target), packed, then[1])
            except rexc.ConnectionError as failed:
                exc = failed
            else:
                if not isinstance(reply, rexc.ResponseError):
                    return reply if then is None else (reply, after)
                exc = error_for(reply, args)
            refusal = refusal_of(exc)
            left = pacing.left(time.monotonic())
            if refusal is None or left <= 0:
                raise exc
            if refusal.kind not in ("MOVED", "ASK"):
                time.sleep(pacing.step(left))

    def _asking(
        self, node: Target, args: Sequence[Arg], then: tuple[Sequence[Arg], float] | None
    ) -> tuple[Any, Any]:
        """``args`` (and ``then``'s command behind it) run once on ``node`` after ``ASKING``,
        on a one-off connection; both replies (None for ``then``'s without it)."""
        client = BlockingClient(node, self._name, self._timeout)
        try:
            sock = client._live()
            client._round_trip(sock, pack(("ASKING",)))
            if then is None:
                return client._round_trip(sock, pack(args)), None
            return cast(
                tuple[Any, Any],
                client._round_trip(sock, pack(args) + pack(then[0]), then[1]),
            )
        finally:
            client.close()

    def _live(self, target: Target | None = None) -> socket.socket:
        """The open socket to the locator's current server (or ``target``)."""
        if target is None:
            target = self._locator.current()
            if target is None:
                target = self._locator.refresh(_UNKNOWN, None)
        sock = self._sock
        # A pooled connection the server closed while it was idle is made anew, not used.
        stale = sock is not None and bool(self._poll.poll(0)) and self._gone(sock)
        if sock is not None and self._at is target and not stale:
            return sock
        self.close()
        self._at = target
        return self._connect(target)

    def _round_trip(self, sock: socket.socket, packed: bytes, wait: float | None = None) -> Any:
        """The reply to the command ``packed``; with ``wait``, ``packed`` holds two commands,
        the second of which may block ``wait`` seconds on the server: both replies (a tuple;
        both read, whatever the first says, so the connection stays in step)."""
        try:
            self._send(packed)
        except OSError as exc:
            # Not all of it was written: Redis never runs a partial command.
            self.close()
            raise rexc.ConnectionError(f"connection to Redis lost: {exc}") from None
        try:
            reply = self._reply()
            if wait is not None:
                sock.settimeout(self._timeout + wait)
                reply = (reply, self._reply())
                sock.settimeout(self._timeout)
        except OSError as exc:  # TimeoutError too: written, then no reply in time
            self.close()
            why = f"no reply within {self._timeout:g} s" if isinstance(exc, TimeoutError) else exc
            where = self._at.where() if self._at is not None else "?"
            raise ReplyLost(
                f"connection to Redis at {where} lost before the reply: {why}"
            ) from None
        except BaseException:  # interrupted (KeyboardInterrupt): a reply may still be owed
            self.close()
            raise
        return reply

    def round_trip(self, packed: bytes) -> Any:
        """``batch`` of the one command ``packed``: its reply (an error reply a
        ``ResponseError`` instance), with the same errors."""
        return self._round_trip(self._live(), packed)

    def batch(self, packed: Sequence[bytes], answer: Callable[[int, Any], None]) -> None:
        """Write the commands ``packed`` in one write and hand each reply, as it is read, to
        ``answer(index, reply)`` (an error reply is a ``ResponseError`` instance). Raises
        ``ConnectionError`` when not connected (nothing was sent) or, for one command, when
        the write failed (Redis never runs a partial command); ``ReplyLost`` when the write of
        several failed (some may have gone out whole) or the connection failed after it: the
        commands not answered yet may have run. The connection is closed on any failure."""
        sock = self._live()
        if len(packed) == 1:
            answer(0, self._round_trip(sock, packed[0]))
            return
        try:
            self._send(b"".join(packed))
            for index in range(len(packed)):
                answer(index, self._reply())
        except OSError as exc:  # TimeoutError too: written, then no reply in time
            self.close()
            why = f"no reply within {self._timeout:g} s" if isinstance(exc, TimeoutError) else exc
            where = self._at.where() if self._at is not None else "?"
            raise ReplyLost(
                f"connection to Redis at {where} lost before the reply: {why}"
            ) from None
        except BaseException:  # interrupted: replies may still be owed
            self.close()
            raise

    def _reply(self) -> Any:
        """The next reply off the connection (reading as much as it takes)."""
        while (reply := self._reader.gets()) is False:
            data = self._recv(65536)
            if not data:
                raise ConnectionResetError("closed by the server")
            self._reader.feed(data)
        return reply

    def _gone(self, sock: socket.socket) -> bool:
        """Whether the server closed this idle, readable connection (a restart, its idle
        ``timeout``). Found before a command is sent, it is a reconnect, not a lost reply. Over
        TLS a record with no data for the caller (a session ticket) is read and ignored."""
        sock.settimeout(0)
        try:
            self._recv(65536)
        except BlockingIOError:  # nothing for the caller (over TLS: a session ticket, read)
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(self._timeout)
        return True  # the end of the stream, or bytes that no command asked for

    def _connect(self, target: Target) -> socket.socket:
        try:
            if target.unix is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self._timeout)
                    sock.connect(target.unix)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((target.host, target.port), self._timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._send, self._recv = sock.sendall, sock.recv
            if target.tls is not None:  # the TLS handshake is bounded by the timeout too
                tls = TlsSocket(sock, target.tls, target.host)
                try:
                    tls.handshake()
                except OSError:
                    sock.close()
                    raise
                self._send, self._recv = tls.sendall, tls.recv
        except OSError as exc:
            why = f"no answer within {self._timeout:g} s" if isinstance(exc, TimeoutError) else exc
            raise rexc.ConnectionError(
                f"cannot connect to Redis at {target.where()}: {why}"
            ) from None
        sock.settimeout(self._timeout)
        self._reader = hiredis.Reader(replyError=rexc.ResponseError)
        self._sock = sock
        self._poll.register(sock, select.POLLIN)
        try:
            for command in target.handshake(self._name):
                self._checks.check(command, self._round_trip(sock, pack(command)), target.where())
        except ReplyLost as exc:  # the caller's command was not sent: nothing ran
            self.close()
            raise rexc.ConnectionError(
                f"cannot connect to Redis at {target.where()}: {exc}"
            ) from None
        except BaseException:
            self.close()
            raise
        return sock

    def close(self) -> None:
        """Close the connection (the next call connects anew)."""
        sock, self._sock = self._sock, None
        self._send, self._recv = _nothing_sent, _nothing_read
        if sock is not None:
            self._poll.unregister(sock)
            sock.close()

    def __del__(self) -> None:  # dropped by its pool
        self.close()


def _nothing_sent(data: bytes) -> None:
    raise rexc.ConnectionError("not connected")


def _nothing_read(size: int) -> bytes:
    return b""


class BlockingPool:
    """Blocking connections lent to one thread at a time, made by ``make`` when none is idle.

    Thread-safe. A connection is lent for a whole call (an enqueue may take several commands)
    and kept for the next thread when it comes back (up to ``keep`` idle). ``close`` closes the
    idle ones; one lent out then is closed when it comes back. The pool may be used again after.
    """

    def __init__(self, make: Callable[[], BlockingClient], keep: int = _KEEP) -> None:
        self._make = make
        self._keep = keep
        self._lock = threading.Lock()
        self._idle: list[BlockingClient] = []
        self._generation = 0  # one more at each close: a client lent before is not kept

    @contextmanager
    def client(self) -> Iterator[BlockingClient]:
        """A connection for the block (the most recently used idle one: its socket is warm)."""
        with self._lock:
            generation = self._generation
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self._make()
        try:
            yield client
        finally:
            with self._lock:
                kept = generation == self._generation and len(self._idle) < self._keep
                if kept:
                    self._idle.append(client)
            if not kept:
                client.close()

    def idle(self) -> list[BlockingClient]:
        """The idle connections (for tests)."""
        with self._lock:
            return list(self._idle)

    def close(self) -> None:
        """Close every idle connection (and each lent one when it comes back)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for client in idle:
            client.close()


#: The refusal of a connection not made yet: look the server up.
_UNKNOWN = Refusal("refused", text="not looked up yet")
