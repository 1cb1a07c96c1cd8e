"""A blocking RESP connection for synchronous enqueues (``enqueue_sync`` from a Flask view).

Without it a sync enqueue crosses to the App's loop thread and back, which costs more than the
round trip to Redis itself. ``BlockingClient`` is one socket, used by one thread at a time (the
broker keeps one per thread), with hiredis for packing and parsing. It speaks to ``redis://``,
``rediss://`` (TLS, as ``target`` reads the URL) and ``unix://`` URLs.

Errors are redis-py's exception types, as in ``_resp``: a refused connection, or one not made
within ``timeout``, is ``redis.exceptions.ConnectionError`` (nothing was sent); a command whose
connection fails, or whose reply does not come within ``timeout``, after it was written raises
``ReplyLost`` (it may have run, so it is never sent again; the next call connects anew). Error
replies are ``ResponseError`` and its kin. A refusal is followed as the fast transport does
(``fast``: the locator asked again, the command resent, within ``timeout``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.exceptions as rexc

from taskit.broker.redis.errors import Refusal, ReplyLost, error_of, refusal_of
from taskit.broker.redis.transport import DEFAULT_TIMEOUT, Arg, Locator
from taskit.broker.redis.transport.fast import FIRST_PAUSE, LAST_PAUSE
from taskit.broker.redis.transport.packing import pack
from taskit.broker.redis.transport.target import Fixed, Target

__all__ = ["BlockingClient"]


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
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader(replyError=rexc.ResponseError)

    def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply; raises redis-py exceptions. A refusal is
        followed (module docstring)."""
        try:
            reply = self._round_trip(self._live(), pack(args))
        except rexc.ConnectionError as exc:
            return self._follow(args, exc)
        if isinstance(reply, rexc.ResponseError):
            return self._follow(args, error_of(reply))
        return reply

    def _follow(self, args: Sequence[Arg], exc: rexc.RedisError) -> Any:
        refusal = refusal_of(exc)
        if refusal is None or not self._locator.follows(refusal):
            raise exc
        deadline, pause = time.monotonic() + self._timeout, FIRST_PAUSE
        while True:
            try:
                target = self._locator.refresh(refusal, self._at)
                if refusal.kind == "ASK" and refusal.host and refusal.port:
                    node = self._locator.node(refusal.host, refusal.port)
                    reply = self._asking(node, args)
                else:
                    reply = self._round_trip(self._live(target), pack(args))
            except rexc.ConnectionError as failed:
                exc = failed
            else:
                if not isinstance(reply, rexc.ResponseError):
                    return reply
                exc = error_of(reply)
            refusal = refusal_of(exc)
            left = deadline - time.monotonic()
            if refusal is None or left <= 0:
                raise exc
            if refusal.kind not in ("MOVED", "ASK"):
                time.sleep(min(pause, left))
                pause = min(pause * 2, LAST_PAUSE)

    def _asking(self, node: Target, args: Sequence[Arg]) -> Any:
        """``args`` run once on ``node`` after ``ASKING``, on a one-off connection."""
        client = BlockingClient(node, self._name, self._timeout)
        try:
            sock = client._live()
            client._round_trip(sock, pack(("ASKING",)))
            return client._round_trip(sock, pack(args))
        finally:
            client.close()

    def _live(self, target: Target | None = None) -> socket.socket:
        """The open socket to the locator's current server (or ``target``)."""
        if target is None:
            target = self._locator.current()
            if target is None:
                target = self._locator.refresh(_UNKNOWN, None)
        if self._sock is not None and self._at is target:
            return self._sock
        self.close()
        self._at = target
        return self._connect(target)

    def _round_trip(self, sock: socket.socket, packed: bytes) -> Any:
        try:
            sock.sendall(packed)
        except OSError as exc:
            # Not all of it was written: Redis never runs a partial command.
            self.close()
            raise rexc.ConnectionError(f"connection to Redis lost: {exc}") from None
        try:
            while (reply := self._reader.gets()) is False:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionResetError("closed by the server")
                self._reader.feed(data)
        except OSError as exc:  # TimeoutError too: written, then no reply in time
            self.close()
            why = f"no reply within {self._timeout:g} s" if isinstance(exc, TimeoutError) else exc
            where = self._at.where() if self._at is not None else "?"
            raise ReplyLost(
                f"connection to Redis at {where} lost before the reply: {why}"
            ) from None
        return reply

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
                if target.tls is not None:  # the TLS handshake is bounded by the timeout too
                    try:
                        sock = target.tls.wrap_socket(sock, server_hostname=target.host)
                    except OSError:
                        sock.close()
                        raise
        except OSError as exc:
            why = f"no answer within {self._timeout:g} s" if isinstance(exc, TimeoutError) else exc
            raise rexc.ConnectionError(
                f"cannot connect to Redis at {target.where()}: {why}"
            ) from None
        sock.settimeout(self._timeout)
        self._reader = hiredis.Reader(replyError=rexc.ResponseError)
        self._sock = sock
        try:
            for command in target.handshake(self._name):
                reply = self._round_trip(sock, pack(command))
                if isinstance(reply, rexc.ResponseError):
                    raise error_of(reply)
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
        if sock is not None:
            sock.close()

    def __del__(self) -> None:  # the thread that owned it ended
        self.close()


#: The refusal of a connection not made yet: look the server up.
_UNKNOWN = Refusal("refused", text="not looked up yet")
