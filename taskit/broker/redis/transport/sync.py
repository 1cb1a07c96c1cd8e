"""A blocking RESP connection for synchronous enqueues (``enqueue_sync`` from a Flask view).

Without it a sync enqueue crosses to the App's loop thread and back, which costs more than the
round trip to Redis itself. ``BlockingClient`` is one socket, used by one thread at a time (the
broker keeps one per thread), with hiredis for packing and parsing. It speaks to ``redis://``,
``rediss://`` (TLS, as ``target`` reads the URL) and ``unix://`` URLs.

Errors are redis-py's exception types, as in ``_resp``: a refused connection, or one not made
within ``timeout``, is ``redis.exceptions.ConnectionError`` (nothing was sent); a command whose
connection fails, or whose reply does not come within ``timeout``, after it was written raises
``ReplyLost`` (it may have run, so it is never sent again; the next call connects anew). Error
replies are ``ResponseError`` and its kin.
"""

from __future__ import annotations

import socket
from typing import Any

import hiredis
import redis.exceptions as rexc

from taskit.broker.redis.errors import ReplyLost, error_of
from taskit.broker.redis.transport import DEFAULT_TIMEOUT, Arg
from taskit.broker.redis.transport.packing import pack
from taskit.broker.redis.transport.target import Target

__all__ = ["BlockingClient"]


class BlockingClient:
    """Commands over one blocking connection; not for concurrent use from several threads.
    ``timeout`` (seconds) bounds connecting, and each send and reply."""

    def __init__(
        self, url: str | Target, client_name: str = "taskit", timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._target = url if isinstance(url, Target) else Target.of(url)
        self._name = client_name
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader(replyError=rexc.ResponseError)

    def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply; raises redis-py exceptions."""
        sock = self._sock if self._sock is not None else self._connect()
        reply = self._round_trip(sock, pack(args))
        if isinstance(reply, rexc.ResponseError):
            raise error_of(reply)
        return reply

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
            raise ReplyLost(
                f"connection to Redis at {self._target.where()} lost before the reply: {why}"
            ) from None
        return reply

    def _connect(self) -> socket.socket:
        target = self._target
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
