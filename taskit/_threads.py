"""The threads a worker runs its sync (``def``) handlers on: long-lived, fed through one queue.

``anyio.to_thread.run_sync`` costs a job about 55 µs of CPU here: a checkpoint, a capacity
limiter, a cancel scope, a future, a queue with its own locks and condition, and one wake-up of
the event loop per call. A worker running thousands of short sync jobs a second pays that for
every one. ``HandlerThreads`` keeps what is needed and shares the rest:

* calls wait in one deque under one lock; a thread takes the next call as soon as it is free,
  so a busy thread is never woken, and an idle one is woken only when no other wake-up is on its
  way (the thread that wakes wakes the next one if calls are still waiting). An idle thread
  sleeps on a ``Bell`` of its own, rung outside the lock: ringing lets go of the GIL, so the
  woken thread can run at once instead of waking only to wait for the GIL (see ``_bell``);
* results go back in batches: a finished call is put on a list, and the event loop is woken
  only if no wake-up is pending (``call_soon_threadsafe`` on asyncio, ``run_sync_soon`` on
  trio), to hand every finished call of the list to its waiter at once. On asyncio the waiter
  is a plain future (an ``anyio.Event`` costs a backend look-up to build and a second future
  inside); elsewhere an ``anyio.Event``;
* each call runs in a copy of its caller's context (contextvars: the running job, progress,
  tracing), as ``anyio.to_thread`` does, and without the caller's async library (so sync code
  it calls, such as ``enqueue_sync``, knows it is not on an event loop).

A cancelled caller abandons its call, as ``abandon_on_cancel=True`` does: one not yet taken is
skipped, one running runs on in its thread and its result is dropped. Single event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from taskit._bell import Bell

try:  # anyio clears it in its worker threads too; without sniffio there is nothing to clear
    from sniffio import current_async_library_cvar as _LIBRARY
except ModuleNotFoundError:  # pragma: no cover
    _LIBRARY = None  # type: ignore[assignment]

__all__ = ["HandlerThreads"]

T = TypeVar("T")

#: An idle thread exits after this many seconds without a call (a new call starts another).
IDLE_EXIT = 10.0


class _Call(Generic[T]):
    __slots__ = ("abandoned", "context", "done", "error", "fn", "value")

    def __init__(self, fn: Callable[[], T], context: contextvars.Context, done: Any) -> None:
        self.fn = fn
        self.context = context
        self.done = done  # an ``asyncio.Future`` on asyncio, else an ``anyio.Event``
        self.value: T | None = None
        self.error: BaseException | None = None
        self.abandoned = False


class HandlerThreads:
    """Up to ``size`` threads running sync calls for the event loop that built this (so build it
    in that loop: ``RuntimeError`` otherwise). ``close()`` when done: idle threads exit at once,
    busy ones after their call (threads idle for ``IDLE_EXIT`` seconds exit anyway)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size!r}")
        token = anyio.lowlevel.current_token()
        native: Any = token.native_token  # the asyncio loop, or trio's TrioToken
        self._loop: asyncio.AbstractEventLoop | None = (
            native if isinstance(native, asyncio.AbstractEventLoop) else None
        )
        self._soon: Callable[[Callable[[], None]], object] = (
            native.call_soon_threadsafe if self._loop is not None else native.run_sync_soon
        )
        self._token = token
        self._size = size
        self._lock = threading.Lock()
        self._calls: deque[_Call[Any]] = deque()
        self._idle: list[Bell] = []  # the bells of idle threads, not rung yet
        self._finished: list[_Call[Any]] = []
        self._threads = 0  # alive
        self._woken = 0  # rung (taken off ``_idle``) and not yet back under the lock
        self._running = 0  # taken by a thread and not finished (abandoned ones included)
        self._delivery_due = False  # a wake-up of the loop is on its way
        self._ring_due = False  # the loop rings an idle thread in its next round
        self._burst = False  # callers woken by one delivery are queueing their next calls
        self._closed = False

    @property
    def running(self) -> int:
        """Calls running in the threads now, abandoned ones included (a thread cannot be
        stopped: an abandoned call runs on until it returns)."""
        return self._running

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one of the threads; its value, or its exception raised here.
        ``RuntimeError`` once closed; ``OSError`` (or ``RuntimeError``) when no new thread
        can be started and none is free."""
        context = contextvars.copy_context()
        if _LIBRARY is not None and _LIBRARY.get() is not None:  # unset (None): nothing to clear
            context.run(_LIBRARY.set, None)
        loop = self._loop
        call = _Call(fn, context, loop.create_future() if loop is not None else anyio.Event())
        ring = None
        with self._lock:
            if self._closed:
                raise RuntimeError("HandlerThreads is closed")
            self._calls.append(call)
            if self._idle and self._woken == 0 and not self._ring_due:
                ring = self._wake_now_or_soon(loop)
            elif self._threads < self._size and len(self._calls) > self._coming():
                self._start_thread(call)  # more calls than threads on their way to them
        if ring is not None:
            ring.ring()
        try:
            await (call.done if loop is not None else call.done.wait())
        except BaseException:
            call.abandoned = True  # not taken yet: skipped; running: its result is dropped
            raise
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]

    def soon(self, fn: Callable[[], None]) -> None:
        """Have ``fn`` called on the event loop soon (from any thread; ``RuntimeError`` once
        that loop is closed)."""
        self._soon(fn)

    def close(self) -> None:
        """No more calls: idle threads exit now, busy ones once their call returns."""
        with self._lock:
            self._closed = True
            bells = [self._wake_one() for _ in range(len(self._idle))]
        for bell in bells:
            bell.ring()

    def _coming(self) -> int:  # with the lock held
        """Threads bound to take a queued call without a new ring from ``run``: the rung ones on
        their way, and the idle ones (a wake-up is on its way, and each woken thread wakes the
        next while calls wait). A busy thread takes one too once free, but a call must not wait
        for a handler to return while the pool has room for another thread."""
        return self._woken + len(self._idle)

    def _wake_now_or_soon(self, loop: asyncio.AbstractEventLoop | None) -> Bell | None:
        """With the lock held: the bell to ring now, or ``None`` if the loop rings one in its
        next round. Now if the pool was idle (this call alone, nothing running, and not one of
        the callers a batch of results just woke): the loop is likely to wait for it. Else
        later, after every caller of this round has queued its call (a busy pool's results come
        back in one batch, and its next calls in one burst): each ring lets go of the GIL, and
        a thread taking it then keeps the loop from queueing the rest; a ring after the burst
        wakes one thread for all of them (it wakes the next). Measured at 10 calls in flight:
        18 µs a call so, 23 ringing at once whenever the pool looked idle."""
        if loop is None or (self._running == 0 and len(self._calls) == 1 and not self._burst):
            return self._wake_one()
        self._ring_due = True
        loop.call_soon(self._ring_soon)
        return None

    def _ring_soon(self) -> None:  # on the event loop, in the round after ``run`` asked for it
        ring = None
        with self._lock:
            self._ring_due = False
            if self._calls and self._idle and self._woken == 0:
                ring = self._wake_one()
        if ring is not None:
            ring.ring()

    def _end_burst(self) -> None:
        self._burst = False

    def _start_thread(self, call: _Call[Any]) -> None:  # with the lock held
        bell = None
        try:
            bell = Bell(IDLE_EXIT)
            thread = threading.Thread(target=self._work, args=(bell,), name="taskit-sync-handler")
            thread.start()
        except BaseException:  # out of sockets or threads: this call fails, the next may not
            if bell is not None:
                bell.close()
            self._calls.remove(call)
            raise
        self._threads += 1

    def _wake_one(self) -> Bell:  # with the lock held; ring the bell once the lock is let go
        self._woken += 1
        return self._idle.pop()  # the latest idle: its stack is likeliest in the cache

    def _work(self, bell: Bell) -> None:
        threadlocals = getattr(anyio.from_thread, "threadlocals", None)
        if threadlocals is not None:  # anyio.from_thread.run works here as in anyio's threads
            # (on asyncio; on trio it needs ``token=``, as from any thread trio did not start)
            threadlocals.current_token = self._token
        try:
            self._serve(bell)
        finally:
            bell.close()

    def _serve(self, bell: Bell) -> None:
        done: _Call[Any] | None = None
        woken = False
        while True:
            # One pass under the lock: hand back the call just run, take the next or go idle.
            with self._lock:
                if woken:
                    self._woken -= 1
                wake_loop = done is not None and self._finish(done)
                call, ring = self._take()
                exiting = call is None and self._closed
                if exiting:
                    self._threads -= 1
                elif call is None:
                    self._idle.append(bell)
            if ring is not None:
                ring.ring()
            if wake_loop:  # as late as can be: the loop wants the GIL this thread holds
                with contextlib.suppress(Exception):  # the loop has ended: nobody waits
                    self._soon(self._deliver)
            if exiting:
                return
            if call is None:
                rung = bell.wait() or self._rung_late(bell)
                if rung is None:
                    return
                done, woken = None, rung
                continue
            try:
                call.value = call.context.run(call.fn)
            except BaseException as exc:  # handed to the caller, whatever it is
                call.error = exc
            done, woken = call, False

    def _take(self) -> tuple[_Call[Any] | None, Bell | None]:  # with the lock held
        """The next call to run (skipping abandoned ones), and the bell of an idle thread to
        ring if more calls are waiting."""
        calls = self._calls
        while calls:
            call = calls.popleft()
            if call.abandoned:
                continue
            self._running += 1
            return call, self._wake_one() if calls and self._idle else None
        return None, None

    def _finish(self, call: _Call[Any]) -> bool:  # with the lock held
        """Put ``call`` on the list to deliver; whether the loop must be woken for it."""
        self._running -= 1
        self._finished.append(call)
        if self._delivery_due:
            return False
        self._delivery_due = True
        return True

    def _rung_late(self, bell: Bell) -> bool | None:
        """After a wait that timed out: ``None`` if this thread exits (idle too long, and no
        call came); ``True``, rung after all; ``False``, not rung but a call is waiting."""
        with self._lock:
            rung = bell not in self._idle  # taken off it by a waker who rings just now
            if not rung:
                self._idle.remove(bell)
                if not self._calls:
                    self._threads -= 1
                    return None
        if rung:  # its ring is on its way: take it, so that none is left for a later wait
            while not bell.wait():
                pass
        return rung

    def _deliver(self) -> None:  # on the event loop
        with self._lock:
            finished, self._finished = self._finished, []
            self._delivery_due = False
        if self._loop is not None:
            for call in finished:
                if not call.done.done():  # a cancelled caller's future is done already
                    call.done.set_result(None)
            if len(finished) > 1:  # their callers run in the next round, then this ends it
                self._burst = True
                self._loop.call_soon(self._end_burst)
        else:
            for call in finished:
                call.done.set()
