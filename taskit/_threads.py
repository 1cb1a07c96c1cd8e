"""The threads a worker runs its sync (``def``) handlers on: long-lived, fed through one queue.

``anyio.to_thread.run_sync`` costs a job about 55 µs of CPU here: a checkpoint, a capacity
limiter, a cancel scope, a future, a queue with its own locks and condition, and one wake-up of
the event loop per call. A worker running thousands of short sync jobs a second pays that for
every one. ``HandlerThreads`` keeps what is needed and shares the rest:

* calls wait in one deque under one lock; a thread takes the next call as soon as it is free,
  so a busy thread is never woken, and an idle one is woken only when no other wake-up is on its
  way (the thread that wakes wakes the next one if calls are still waiting);
* results go back in batches: a finished call is put on a list, and the event loop is woken
  only if no wake-up is pending (``call_soon_threadsafe`` on asyncio, ``run_sync_soon`` on
  trio), to hand every finished call of the list to its waiter at once;
* each call runs in a copy of its caller's context (contextvars: the running job, progress,
  tracing), as ``anyio.to_thread`` does, and without the caller's async library (so sync code
  it calls, such as ``enqueue_sync``, knows it is not on an event loop).

A cancelled caller abandons its call, as ``abandon_on_cancel=True`` does: one not yet taken is
skipped, one running runs on in its thread and its result is dropped. Single event loop only.
"""

from __future__ import annotations

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

    def __init__(self, fn: Callable[[], T], context: contextvars.Context) -> None:
        self.fn = fn
        self.context = context
        self.done = anyio.Event()
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
        self._soon: Callable[[Callable[[], None]], object] = (
            getattr(native, "call_soon_threadsafe", None) or native.run_sync_soon
        )
        self._token = token
        self._size = size
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._calls: deque[_Call[Any]] = deque()
        self._finished: list[_Call[Any]] = []
        self._threads = 0  # alive
        self._waiting = 0  # idle, in ``_ready.wait``
        self._woken = 0  # notified and not yet back from their wait
        self._delivery_due = False  # a wake-up of the loop is on its way
        self._closed = False

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one of the threads; its value, or its exception raised here."""
        context = contextvars.copy_context()
        if _LIBRARY is not None:
            context.run(_LIBRARY.set, None)
        call = _Call(fn, context)
        with self._lock:
            if self._closed:
                raise RuntimeError("HandlerThreads is closed")
            self._calls.append(call)
            if self._waiting > self._woken:
                if self._woken == 0:  # else the thread on its way wakes the next one
                    self._wake_one()
            elif self._threads < self._size:
                self._threads += 1
                threading.Thread(target=self._work, name="taskit-sync-handler").start()
        try:
            await call.done.wait()
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
            self._ready.notify_all()

    def _wake_one(self) -> None:  # with the lock held
        self._woken += 1
        self._ready.notify()

    def _work(self) -> None:
        threadlocals = getattr(anyio.from_thread, "threadlocals", None)
        if threadlocals is not None:  # anyio.from_thread.run works here as in anyio's threads
            # (on asyncio; on trio it needs ``token=``, as from any thread trio did not start)
            threadlocals.current_token = self._token
        while (call := self._next()) is not None:
            try:
                call.value = call.context.run(call.fn)
            except BaseException as exc:  # handed to the caller, whatever it is
                call.error = exc
            self._finish(call)

    def _next(self) -> _Call[Any] | None:
        """The next call to run, waiting for one; ``None``: this thread exits."""
        with self._lock:
            while True:
                while self._calls:
                    call = self._calls.popleft()
                    if call.abandoned:
                        continue
                    if self._calls and self._waiting > self._woken:
                        self._wake_one()  # more are waiting: the next idle thread helps
                    return call
                if self._closed:
                    self._threads -= 1
                    return None
                self._waiting += 1
                notified = self._ready.wait(IDLE_EXIT)
                self._waiting -= 1
                self._woken = max(self._woken - 1, 0)
                if not notified and not self._calls:
                    self._threads -= 1
                    return None

    def _finish(self, call: _Call[Any]) -> None:
        with self._lock:
            self._finished.append(call)
            if self._delivery_due:
                return
            self._delivery_due = True
        with contextlib.suppress(Exception):  # the loop has ended: nobody waits any more
            self._soon(self._deliver)

    def _deliver(self) -> None:  # on the event loop
        with self._lock:
            finished, self._finished = self._finished, []
            self._delivery_due = False
        for call in finished:
            call.done.set()
