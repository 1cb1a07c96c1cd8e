"""Sentinel's ``+switch-master`` followed as it happens (``locate.Sentinel``).

A ``SwitchListener`` is one daemon thread with a blocking socket of its own, subscribed to the
``+switch-master`` channel of one sentinel. It serves every event loop and thread alike (the
locator's answer is shared), and no command ever waits for it: a transport that is refused
still asks the locator again, as without it. Each message naming the watched master is handed
to ``on_switch(host, port)``; so is the master the sentinel names just after each subscribe,
which catches a switch made while no sentinel was listened to.

When its sentinel goes (the connection ends, or it does not answer a ``PING`` within
``_PING_EVERY`` seconds) the listener subscribes on the next sentinel of the URL; after a round
where none answered it waits (``_FIRST_PAUSE`` doubling to ``_LAST_PAUSE``) and tries again.
``close`` stops it at once: it shuts the socket down, which wakes the blocked read.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.exceptions as rexc

from taskit.broker.redis.transport.handshake import Handshake
from taskit.broker.redis.transport.packing import pack
from taskit.broker.redis.transport.sync import BlockingClient
from taskit.broker.redis.transport.target import Target

__all__ = ["CHANNEL", "THREAD_NAME", "SwitchListener"]

log = logging.getLogger(__name__)

#: The channel on which a sentinel announces a new master:
#: ``<master name> <old ip> <old port> <new ip> <new port>``.
CHANNEL = "+switch-master"
#: The name of the listener's thread (and of its connections, in ``CLIENT LIST``).
THREAD_NAME = "taskit-sentinel-switch"
#: Seconds a connect, the handshake, or a reply to ``PING`` may take.
_ANSWER_LIMIT = 1.0
#: Seconds of silence after which the sentinel is pinged (and left if it does not answer).
_PING_EVERY = 5.0
#: Seconds between rounds in which no sentinel answered: the first, and the most.
_FIRST_PAUSE, _LAST_PAUSE = 0.1, 2.0
#: Seconds ``close`` waits for the thread to end.
_JOIN_LIMIT = 3.0
#: ``_next``'s answer when nothing came in the time given.
_SILENT = object()


class SwitchListener:
    """Listens to ``+switch-master`` for master ``name`` on one of ``sentinels`` at a time
    (module docstring); ``on_switch`` is called on the listener's thread. ``start`` once;
    ``close`` stops it for good."""

    def __init__(
        self, sentinels: Sequence[Target], name: str, on_switch: Callable[[str, int], None]
    ) -> None:
        self._sentinels = list(sentinels)
        self._name = name
        self._on_switch = on_switch
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop listening: the socket shut down (which wakes the read), the thread joined
        (bounded: a connect under way ends within ``_ANSWER_LIMIT``)."""
        self._stop.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the thread
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_JOIN_LIMIT)

    def _run(self) -> None:
        pause = _FIRST_PAUSE
        while not self._stop.is_set():
            for sentinel in self._sentinels:
                if self._stop.is_set():
                    return
                try:
                    if self._listen(sentinel):
                        pause = _FIRST_PAUSE
                except (OSError, rexc.RedisError) as exc:
                    if not self._stop.is_set():
                        log.debug("+switch-master from %s: %s", sentinel.where(), exc)
                except Exception:  # on_switch's own failure must not end the listening
                    log.exception("following +switch-master from %s failed", sentinel.where())
            self._stop.wait(pause)
            pause = min(pause * 2, _LAST_PAUSE)

    def _listen(self, sentinel: Target) -> bool:
        """Subscribe on ``sentinel`` and follow its messages until the connection ends or
        ``close``; whether it subscribed."""
        sock = socket.create_connection((sentinel.host, sentinel.port), _ANSWER_LIMIT)
        with self._lock:
            if self._stop.is_set():
                sock.close()
                return False
            self._sock = sock
        try:
            reader = hiredis.Reader(replyError=rexc.ResponseError)
            checks = Handshake()
            for command in sentinel.handshake(THREAD_NAME):
                reply = _call(sock, reader, command)
                checks.check(command, reply, sentinel.where())
            subscribed = _call(sock, reader, ("SUBSCRIBE", CHANNEL))
            if isinstance(subscribed, rexc.ResponseError):
                raise subscribed
            self._catch_up(sentinel)
            self._follow(sock, reader)
            return True
        finally:
            with self._lock:
                self._sock = None
            sock.close()

    def _catch_up(self, sentinel: Target) -> None:
        """The master ``sentinel`` names now, handed on (a switch made while unsubscribed)."""
        client = BlockingClient(sentinel, THREAD_NAME, _ANSWER_LIMIT)
        try:
            named = client.execute("SENTINEL", "get-master-addr-by-name", self._name)
        finally:
            client.close()
        if isinstance(named, list) and len(named) == 2:
            self._on_switch(named[0].decode(), int(named[1]))

    def _follow(self, sock: socket.socket, reader: hiredis.Reader) -> None:
        while not self._stop.is_set():
            message = _next(sock, reader, _PING_EVERY)
            if message is _SILENT:
                sock.sendall(pack(("PING",)))
                if _next(sock, reader, _ANSWER_LIMIT) is _SILENT:
                    raise TimeoutError(f"no answer to PING within {_ANSWER_LIMIT:g} s")
                continue
            self._read(message)

    def _read(self, message: Any) -> None:
        """Hand on a ``message`` naming this master: ``[b"message", channel, payload]``."""
        if not (isinstance(message, list) and len(message) == 3 and message[0] == b"message"):
            return  # a PING's answer
        words = message[2].decode(errors="replace").split()
        if len(words) != 5 or words[0] != self._name or not words[4].isdigit():
            return  # another master's switch (a sentinel may watch several)
        log.info("Sentinel announces %s:%s the master of %r", words[3], words[4], self._name)
        self._on_switch(words[3], int(words[4]))


def _call(sock: socket.socket, reader: hiredis.Reader, command: Sequence[Any]) -> Any:
    """Send ``command``; its reply within ``_ANSWER_LIMIT`` (``TimeoutError`` if none)."""
    sock.sendall(pack(command))
    reply = _next(sock, reader, _ANSWER_LIMIT)
    if reply is _SILENT:
        raise TimeoutError(f"no reply to {command[0]} within {_ANSWER_LIMIT:g} s")
    return reply


def _next(sock: socket.socket, reader: hiredis.Reader, wait: float) -> Any:
    """The next reply on ``sock`` within ``wait`` seconds (``_SILENT`` if none came);
    ``ConnectionResetError`` when the connection ends."""
    while (reply := reader.gets()) is False:
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            return _SILENT
        data = sock.recv(65536)
        if not data:
            raise ConnectionResetError("closed by the sentinel")
        reader.feed(data)
    return reply
