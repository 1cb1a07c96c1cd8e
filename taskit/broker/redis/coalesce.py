"""Concurrent plain enqueues of one broker, combined into one script call (issue 19).

Why: the transports already pipeline (64 request handlers' commands go out in one write), but
each enqueue is still its own ``EVALSHA`` of ``enqueue-plain-n.lua``, with its own request
built, packed and parsed in the producer, and its own run of the script in Redis (about 220k
Redis instructions for a single job against 32-52k a job inside a batch of many). Here the
callers that enqueue while another enqueue of the same broker is on its way share the next
call instead.

How, per event loop (``join``, ``wait``, ``release``) and for threads (``join_blocking``...)
alike: a caller that finds no enqueue of this broker in flight sends its own jobs at once, as an
enqueue always went (a lone producer pays no added loop turn, timer or hand-off). A caller that
finds one in flight leaves its jobs here and waits; when the call in flight is answered,
everything left meanwhile goes as ONE call (at most ``MAX_JOBS`` jobs and ``MAX_BYTES`` of
specs, so one call never holds Redis long; the rest go in the next), and each caller gets
exactly its own jobs' answers, in its order. On a loop the next call is sent by a task of this
module's own (so no caller's cancellation cuts it short); when nothing waits as a call is
answered, that task waits for the end of the loop tick, so the callers just answered, which
enqueue again at once (64 request handlers), go in its next call rather than one of them alone
(measured a little faster than ending there; docs/performance.md). Among threads, the next
call is sent by the first thread that waits (it leads one call at most: its own jobs are in
it), as ``transport.shared`` does for commands.

What the broker gives (``together``): one script call of the callers' jobs, answered per
caller; or None when the script answered anything but 'ok' (the plain enqueue is all or none:
a dead letter elsewhere, an unreadable record, wrote nothing), and then each caller sends its
own jobs on its own, as if it had been alone (``alone``), so one caller's bad job never fails
or changes another's. An error of the call itself (the connection lost:
``BrokerOutcomeUnknownError``; out of memory; a script error) goes to every caller of that
call, each its own copy: what each would have got with its command pipelined beside the
others'; the enqueue is idempotent by id, so a retry stores nothing twice.

Only jobs of one broker are combined, and a broker's keys are one hash tag: one Cluster slot,
one shard of a sharded broker (each shard is a broker of its own). A caller cancelled while it
waits leaves the others' answers whole; its jobs may still be stored if they had gone out
(as for a pipelined command whose caller was cancelled), and are not sent if they had not.
"""

from __future__ import annotations

import asyncio
import copy
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from taskit.broker.redis.requests import BATCH
from taskit.errors import BrokerOutcomeUnknownError

__all__ = ["MAX_BYTES", "MAX_JOBS", "Coalescer", "Part"]

#: The most jobs one combined call carries (a caller with more sends its own, as before).
MAX_JOBS = BATCH
#: The most bytes of encoded jobs one combined call carries (a caller whose jobs alone weigh
#: more goes in a call of its own, as its enqueue would have gone).
MAX_BYTES = 1 << 20


class Part(Protocol):
    """One caller's jobs: how many (``count``), and their encoded size in bytes (``weight``)."""

    @property
    def count(self) -> int: ...

    @property
    def weight(self) -> int: ...


P = TypeVar("P", bound=Part)
R = TypeVar("R")

#: ``together``'s answer: per part, its answer or its own error; None: each part alone.
Answers = Sequence[R | BaseException] | None


class _Alone:
    """The answer that tells a waiting caller to send its jobs on its own."""


_ALONE = _Alone()


class _Waiter(Generic[P, R]):
    """A caller waiting on a loop: its part and the future of its answer."""

    __slots__ = ("future", "part")

    def __init__(self, part: P, future: asyncio.Future[R | _Alone]) -> None:
        self.part = part
        self.future = future


class _Line(Generic[P, R]):
    """One event loop's state: whether a combined call is in flight, and who waits."""

    __slots__ = ("busy", "task", "waiting")

    def __init__(self) -> None:
        self.busy = False
        self.waiting: list[_Waiter[P, R]] = []
        self.task: asyncio.Task[None] | None = None  # the sending task (held: loops keep weak refs)


class _Held(Generic[P, R]):
    """A thread waiting: its part, then its answer or error; ``done`` is held until either is
    in, or until it is to lead the next call (``lead``)."""

    __slots__ = ("answer", "done", "error", "lead", "part")

    def __init__(self, part: P) -> None:
        self.part = part
        self.answer: R | _Alone = _ALONE
        self.error: BaseException | None = None
        self.lead = False
        self.done = threading.Lock()
        self.done.acquire()


class Coalescer(Generic[P, R]):
    """Combines the concurrent calls of one broker (module docstring): ``join``, ``release``
    and ``wait`` on event loops (state per loop), ``join_blocking``, ``release_blocking`` and
    ``wait_blocking`` for threads. ``alone`` sends one part as an enqueue always went;
    ``together`` sends many as one call (see ``Answers``)."""

    def __init__(self) -> None:
        self._lines: dict[asyncio.AbstractEventLoop, _Line[P, R]] = {}
        self._lock = threading.Lock()
        self._held: list[_Held[P, R]] = []
        self._busy = False  # a thread's call is in flight
        self._pid = os.getpid()  # the process whose threads these are (a fork's are not)
        #: Combined calls sent so far (loops and threads; not the callers' own), for tests.
        self.combined = 0

    # -- event loops -------------------------------------------------------------------------
    def join(self, part: P) -> _Waiter[P, R] | None:
        """None when no combined call of this loop is in flight: the caller sends ``part`` at
        once (the line is now busy: ``release`` it after). Else ``part`` waits for the next
        combined call: ``wait`` for its answer."""
        loop = asyncio.get_running_loop()
        line = self._lines.get(loop)
        if line is None:
            line = self._line(loop)
        if not line.busy:  # the common call: nothing to set up
            line.busy = True
            return None
        waiter: _Waiter[P, R] = _Waiter(part, loop.create_future())
        line.waiting.append(waiter)
        return waiter

    def release(self, together: Callable[[list[P]], Awaitable[Answers[R]]]) -> None:
        """After the call of a caller ``join`` let go at once (answered, failed or cancelled):
        send what waits meanwhile (``together``, in a task), or mark the line free."""
        loop = asyncio.get_running_loop()
        line = self._lines[loop]
        if line.waiting:
            line.task = loop.create_task(self._send(line, together))
        else:
            line.busy = False

    async def wait(self, waiter: _Waiter[P, R], alone: Callable[[P], Awaitable[R]]) -> R:
        """``waiter``'s answer, from the combined call it went in (or from ``alone``, when
        that call's answer was not 'ok')."""
        got = await waiter.future  # cancelled: only this future is (the call goes on)
        if isinstance(got, _Alone):
            return await alone(waiter.part)
        return got

    def _line(self, loop: asyncio.AbstractEventLoop) -> _Line[P, R]:
        with self._lock:
            for old in [lp for lp in self._lines if lp.is_closed()]:
                del self._lines[old]
            return self._lines.setdefault(loop, _Line())

    async def _send(
        self, line: _Line[P, R], together: Callable[[list[P]], Awaitable[Answers[R]]]
    ) -> None:
        """Send what waits, one combined call after another, until nothing does."""
        batch: list[_Waiter[P, R]] = []
        try:
            while True:
                if not line.waiting:
                    # End of this loop tick: the callers just answered may enqueue again, and
                    # their jobs go in the next call rather than one of them going alone.
                    await asyncio.sleep(0)
                    if not line.waiting:
                        break
                batch = _take(line.waiting, lambda w: not w.future.cancelled())
                if not batch:
                    continue
                self.combined += 1
                try:
                    answers = await together([w.part for w in batch])
                except Exception as exc:  # the call's own error: every caller's
                    for w in batch:
                        if not w.future.done():
                            w.future.set_exception(_own(exc))
                    continue
                for i, w in enumerate(batch):
                    if w.future.done():  # cancelled meanwhile: its answer is dropped
                        continue
                    got = _ALONE if answers is None else answers[i]
                    if isinstance(got, BaseException):
                        w.future.set_exception(got)
                    else:
                        w.future.set_result(got)
            batch = []
        finally:
            # Cancelled (the loop is ending): nobody is left waiting for a call never sent.
            for w in [*batch, *line.waiting]:
                w.future.cancel()
            line.waiting.clear()
            line.busy, line.task = False, None

    # -- threads -----------------------------------------------------------------------------
    def join_blocking(self, part: P) -> _Held[P, R] | None:
        """``join`` for threads: one call in flight among all threads of the process. None:
        send at once, then ``release_blocking``; else ``wait_blocking``."""
        if self._pid != os.getpid():  # forked meanwhile: the parent's threads are not here
            self._lock, self._held, self._busy, self._pid = threading.Lock(), [], False, os.getpid()
        with self._lock:
            if not self._busy:  # then nobody waits either
                self._busy = True
                return None
            held: _Held[P, R] = _Held(part)
            self._held.append(held)
            return held

    def wait_blocking(
        self,
        held: _Held[P, R],
        alone: Callable[[P], R],
        together: Callable[[list[P]], Answers[R]],
    ) -> R:
        """``held``'s answer: from the combined call it went in, led by this thread if it is
        woken to (``together``); or from ``alone``, when that call's answer was not 'ok'."""
        held.done.acquire()  # until its answer is in, or it is to lead the next call
        if held.lead:
            self._lead(together)
        if held.error is not None:
            raise held.error
        if isinstance(held.answer, _Alone):
            return alone(held.part)
        return held.answer

    def _lead(self, together: Callable[[list[P]], Answers[R]]) -> None:
        """Send the waiting threads' parts (the leader's first) as one call, hand each its
        answer, then wake the next call's leader (or mark the line free)."""
        with self._lock:
            batch = _take(self._held, lambda _: True)
        self.combined += 1
        try:
            answers = together([h.part for h in batch])
        except Exception as exc:  # the call's own error: every caller's
            for h in batch:
                h.error = _own(exc)
        except BaseException:  # interrupted: the others' outcome is unknown
            for h in batch[1:]:
                h.error = BrokerOutcomeUnknownError(
                    "the thread sending this enqueue with others was interrupted; "
                    "it may have been stored"
                )
                h.done.release()
            self.release_blocking()
            raise
        else:  # None: each on its own (``answer`` stays ``_ALONE``)
            for h, got in zip(batch, answers or (), strict=answers is not None):
                if isinstance(got, BaseException):
                    h.error = got
                else:
                    h.answer = got
        for h in batch[1:]:  # batch[0] is the leader's own: it is not waiting
            h.done.release()
        self.release_blocking()

    def release_blocking(self) -> None:
        """``release`` for threads: the next call's leader (the first thread waiting) is woken,
        or the line marked free."""
        with self._lock:
            if not self._held:
                self._busy = False
                return
            nxt = self._held[0]
        nxt.lead = True
        nxt.done.release()

    def waiting(self) -> int:
        """Threads waiting for the next call (for tests)."""
        with self._lock:
            return len(self._held)


class _Waits(Protocol):
    @property
    def part(self) -> Part: ...


W = TypeVar("W", bound=_Waits)


def _take(waiting: list[W], live: Callable[[W], bool]) -> list[W]:
    """The next call's callers, taken off the front of ``waiting`` (those not ``live`` are
    dropped): as many as fit ``MAX_JOBS`` and ``MAX_BYTES``, at least one."""
    batch: list[W] = []
    jobs = size = 0
    taken = 0
    for w in waiting:
        part = w.part
        if batch and (jobs + part.count > MAX_JOBS or size + part.weight > MAX_BYTES):
            break
        taken += 1
        if live(w):
            batch.append(w)
            jobs += part.count
            size += part.weight
    del waiting[:taken]
    return batch


def _own(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for one more caller (raised in many tasks or threads at once, one
    instance would gather all their tracebacks), with its cause; ``exc`` if it cannot be
    copied."""
    try:
        twin = copy.copy(exc)
    except Exception:  # pragma: no cover - an exception type that cannot be rebuilt
        return exc
    twin.__cause__, twin.__context__ = exc.__cause__, exc.__context__
    twin.__suppress_context__ = exc.__suppress_context__
    return twin.with_traceback(exc.__traceback__)
