"""One blocking connection shared by threads, with automatic pipelining (``enqueue_sync`` from
a WSGI server's thread pool).

Why: a thread's ``enqueue_sync`` is one script call, and a thread per connection pays a write,
a read and a wake-up per call. Here a thread that calls while no batch is on the wire writes
its command at once and reads its reply (a lone thread pays one lock more than the blocking
client alone); threads that call meanwhile queue their commands, and when the batch on the wire
is answered, the first of them takes the lead: it writes every queued command in one write and
hands each reply to its thread, in order (RESP replies come in the order commands went out).
A thread leads one batch at most (its own reply is in it), so no call waits behind more than
the batch before its own.

Errors are as ``sync.BlockingClient``'s, each caller getting its own: an error reply raises in
its caller only; a refusal (MOVED, READONLY, a refused connect...) is followed on a pooled
connection of the caller's own (``BlockingClient.follow``); a connection that fails fails the
commands of its batch not answered yet (``ReplyLost``: they may have run) and the next batch
connects anew. Commands that block on the server (a ``WAIT`` behind a write: ``execute_then``)
never go on the shared connection: they would hold every other thread's reply behind them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis.exceptions as rexc

from taskit.broker.redis.transport import Arg
from taskit.broker.redis.transport.handshake import error_for
from taskit.broker.redis.transport.packing import pack
from taskit.broker.redis.transport.sync import BlockingClient, BlockingPool

__all__ = ["SharedClient"]


class _Call:
    """One thread's command: its packed bytes, then its reply or error. ``done`` is held until
    the reply is in (a lock released once: cheaper than an ``Event``)."""

    __slots__ = ("done", "error", "lead", "packed", "reply")

    def __init__(self, packed: bytes) -> None:
        self.packed = packed
        self.reply: Any = None
        self.error: BaseException | None = None
        self.lead = False  # woken to lead the next batch, not with its reply
        self.done = threading.Lock()
        self.done.acquire()


class SharedClient:
    """``execute`` and ``execute_then`` as ``BlockingClient``'s, safe to call from many threads
    at once: single commands share ``client``'s connection (module docstring); the rest, and
    the following of refusals, go through ``pool``."""

    def __init__(self, client: BlockingClient, pool: BlockingPool) -> None:
        self._client = client
        self._pool = pool
        self._lock = threading.Lock()
        self._queue: list[_Call] = []
        self._busy = False  # a batch is on the wire (or being written)
        #: Batches written so far (each one write of one or more commands), for tests.
        self.batches = 0

    def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply; raises redis-py exceptions. A refusal is
        followed on a pooled connection."""
        packed = pack(args)
        with self._lock:
            lead = not self._busy  # then nothing is queued either
            self._busy = True
            if not lead:
                call = _Call(packed)
                self._queue.append(call)
        if lead:  # alone on the wire: no hand-off to set up (the common call)
            return self._alone(args, packed)
        call.done.acquire()  # until its reply is in, or it is to lead the next batch
        if call.lead:
            self._lead()
        if call.error is not None:
            return self._follow(args, call.error)
        if isinstance(call.reply, rexc.ResponseError):
            return self._follow(args, error_for(call.reply, args))
        return call.reply

    def _alone(self, args: Sequence[Arg], packed: bytes) -> Any:
        """``execute`` by the thread that found the wire free: its command is the batch."""
        self.batches += 1
        try:
            reply = self._client.round_trip(packed)
        except Exception as exc:
            self._pass_on()
            return self._follow(args, exc)
        except BaseException:
            self._pass_on()
            raise
        self._pass_on()
        if isinstance(reply, rexc.ResponseError):
            return self._follow(args, error_for(reply, args))
        return reply

    def execute_then(
        self, args: Sequence[Arg], then: Sequence[Arg], wait: float
    ) -> tuple[Any, Any]:
        """``BlockingClient.execute_then`` on a pooled connection (``then`` may block)."""
        with self._pool.client() as client:
            return client.execute_then(args, then, wait)

    def _follow(self, args: Sequence[Arg], exc: BaseException) -> Any:
        """Raise ``exc``, or follow it on a pooled connection if it is a refusal to follow."""
        if not isinstance(exc, rexc.RedisError) or not self._client.follows(exc):
            raise exc
        with self._pool.client() as client:
            return client.follow(args, exc)

    def _lead(self) -> None:
        """Write every queued command in one write, hand out the replies, then wake the first
        command queued meanwhile to lead the next batch (or mark the wire free)."""
        with self._lock:
            batch, self._queue = self._queue, []
        answered = 0

        def answer(index: int, reply: Any) -> None:
            nonlocal answered
            call = batch[index]
            call.reply = reply
            answered = index + 1
            if index > 0:  # the leader's own call is batch[0]: it is not waiting
                call.done.release()

        try:
            self.batches += 1
            self._client.batch([call.packed for call in batch], answer)
        except BaseException as exc:
            for call in batch[answered:]:
                call.error = exc
                if call is not batch[0]:
                    call.done.release()
            if not isinstance(exc, Exception):
                self._pass_on()
                raise
        self._pass_on()

    def _pass_on(self) -> None:
        """The next batch's leader: the first command queued meanwhile, woken; or none."""
        with self._lock:
            if not self._queue:
                self._busy = False
                return
            nxt = self._queue[0]
        nxt.lead = True
        nxt.done.release()

    def queued(self) -> int:
        """Commands queued for the next batch (for tests)."""
        with self._lock:
            return len(self._queue)

    @property
    def client(self) -> BlockingClient:
        """The shared connection (for tests)."""
        return self._client

    def close(self) -> None:
        """Close the shared connection (the next batch connects anew). Blocking; a batch on
        the wire meanwhile fails as a lost connection does."""
        self._client.close()
