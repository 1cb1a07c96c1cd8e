"""The threads a worker runs its sync (``def``) handlers on: long-lived, fed through one queue.

``anyio.to_thread.run_sync`` costs a job about 55 µs of CPU here: a checkpoint, a capacity
limiter, a cancel scope, a future, a queue with its own locks and condition, and one wake-up of
the event loop per call. A worker running thousands of short sync jobs a second pays that for
every one. ``HandlerThreads`` keeps what is needed and shares the rest:

* calls wait in one deque under one lock; a thread takes the next call as soon as it is free,
  so a busy thread is never woken, and an idle one is woken only when no other wake-up is on its
  way (the thread that wakes wakes the next one if calls are still waiting). An idle thread
  parks on a lock of its own, held while it sleeps: waking it is one ``release``, where a
  ``Condition`` would build a new lock for every wait;
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
        self._parked: list[threading.Lock] = []  # idle threads' locks, not yet released
        self._finished: list[_Call[Any]] = []
        self._threads = 0  # alive
        self._woken = 0  # released from ``_parked`` and not yet back under the lock
        self._running = 0  # taken by a thread and not finished (abandoned ones included)
        self._delivery_due = False  # a wake-up of the loop is on its way
        self._closed = False

    @property
    def running(self) -> int:
        """Calls running in the threads now, abandoned ones included (a thread cannot be
        stopped: an abandoned call runs on until it returns)."""
        return self._running

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one of the threads; its value, or its exception raised here."""
        context = contextvars.copy_context()
        if _LIBRARY is not None and _LIBRARY.get() is not None:  # unset (None): nothing to clear
            context.run(_LIBRARY.set, None)
        loop = self._loop
        call = _Call(fn, context, loop.create_future() if loop is not None else anyio.Event())
        with self._lock:
            if self._closed:
                raise RuntimeError("HandlerThreads is closed")
            self._calls.append(call)
            if self._parked:
                if self._woken == 0:  # else the thread on its way wakes the next one
                    self._wake_one()
            elif self._threads < self._size:
                self._threads += 1
                threading.Thread(target=self._work, name="taskit-sync-handler").start()
        try:
            await (call.done if loop is not None else call.done.wait())
        except BaseException:
            call.abandoned = True  # not taken yet: skipped; running: its result is dropped
            raise
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]

    def close(self) -> None:
        """No more calls: idle threads exit now, busy ones once their call returns."""
        with self._lock:
            self._closed = True
            while self._parked:
                self._wake_one()

    def _wake_one(self) -> None:  # with the lock held
        self._woken += 1
        self._parked.pop().release()  # the latest parked: its stack is likeliest in the cache

    def _work(self) -> None:
        threadlocals = getattr(anyio.from_thread, "threadlocals", None)
        if threadlocals is not None:  # anyio.from_thread.run works here as in anyio's threads
            # (on asyncio; on trio it needs ``token=``, as from any thread trio did not start)
            threadlocals.current_token = self._token
        park = threading.Lock()
        park.acquire()  # held while this thread sleeps: whoever releases it wakes the thread
        done: _Call[Any] | None = None
        woken = False
        while True:
            # One pass under the lock: hand back the call just run, take the next or park.
            with self._lock:
                if woken:
                    self._woken -= 1
                wake_loop = done is not None and self._finish(done)
                call = self._take()
                exiting = call is None and self._closed
                if exiting:
                    self._threads -= 1
                elif call is None:
                    self._parked.append(park)
            if wake_loop:  # as late as can be: the loop wants the GIL this thread holds
                with contextlib.suppress(Exception):  # the loop has ended: nobody waits
                    self._soon(self._deliver)
            if exiting:
                return
            if call is None:
                if park.acquire(timeout=IDLE_EXIT):
                    done, woken = None, True
                    continue
                if self._idle_out(park):
                    return
                done, woken = None, False
                continue
            try:
                call.value = call.context.run(call.fn)
            except BaseException as exc:  # handed to the caller, whatever it is
                call.error = exc
            done, woken = call, False

    def _take(self) -> _Call[Any] | None:  # with the lock held
        calls = self._calls
        while calls:
            call = calls.popleft()
            if call.abandoned:
                continue
            if calls and self._parked:
                self._wake_one()  # more are waiting: the next idle thread helps
            self._running += 1
            return call
        return None

    def _finish(self, call: _Call[Any]) -> bool:  # with the lock held
        """Put ``call`` on the list to deliver; whether the loop must be woken for it."""
        self._running -= 1
        self._finished.append(call)
        if self._delivery_due:
            return False
        self._delivery_due = True
        return True

    def _idle_out(self, park: threading.Lock) -> bool:
        """After a park that timed out: whether this thread exits (no call came)."""
        with self._lock:
            if park not in self._parked:  # released just as the wait ran out: it was woken
                park.acquire()  # already released (under this lock): held again at once
                self._woken -= 1
                return False
            self._parked.remove(park)
            if self._calls:  # taken soon by this thread (another's wake-up is on its way)
                return False
            self._threads -= 1
            return True

    def _deliver(self) -> None:  # on the event loop
        with self._lock:
            finished, self._finished = self._finished, []
            self._delivery_due = False
        if self._loop is not None:
            for call in finished:
                if not call.done.done():  # a cancelled caller's future is done already
                    call.done.set_result(None)
        else:
            for call in finished:
                call.done.set()
