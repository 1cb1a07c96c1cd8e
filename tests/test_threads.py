"""``HandlerThreads``, where a worker runs its sync handlers: values and errors come back to the
caller, the caller's contextvars reach the thread, concurrency is capped, a cancelled caller
abandons its call, running calls are counted, idle threads are woken and exit when idle too long,
and closing lets every thread go; on asyncio and trio."""

from __future__ import annotations

import contextvars
import threading

import anyio
import anyio.from_thread
import pytest

from taskit import _threads
from taskit._bell import Bell
from taskit._threads import HandlerThreads
from taskit.errors import TaskitError

pytestmark = pytest.mark.anyio

WAIT = 5.0  # upper bound on any wait: a hang fails the test instead of stalling the run
_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("_VAR", default="unset")


async def test_values_and_errors_come_back_from_another_thread() -> None:
    pool = HandlerThreads(2)
    try:
        here = threading.get_ident()
        assert await pool.run(threading.get_ident) != here
        with pytest.raises(TaskitError, match="boom"):
            await pool.run(lambda: (_ for _ in ()).throw(TaskitError("boom")))
        with pytest.raises(SystemExit):  # any BaseException reaches the caller, not the thread
            await pool.run(lambda: (_ for _ in ()).throw(SystemExit(3)))
    finally:
        pool.close()


async def test_the_callers_context_reaches_the_thread_and_changes_there_stay_there() -> None:
    pool = HandlerThreads(1)
    try:

        def read_and_set() -> str:
            seen = _VAR.get()
            _VAR.set("changed in the thread")
            return seen

        _VAR.set("the caller's")
        assert await pool.run(read_and_set) == "the caller's"
        assert _VAR.get() == "the caller's"
    finally:
        pool.close()


async def test_sync_code_in_the_thread_is_not_told_it_runs_on_an_event_loop() -> None:
    # enqueue_sync refuses to run on an event loop (it would block it): in a handler's thread it
    # must work, so the thread must not look like the loop's.
    pool = HandlerThreads(1)
    try:

        def on_a_loop() -> bool:
            try:
                anyio.lowlevel.current_token()
            except RuntimeError:
                return False
            return True

        assert await pool.run(on_a_loop) is False
    finally:
        pool.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # on trio, trio's own threads only
async def test_anyio_from_thread_reaches_the_loop_from_a_handler_thread() -> None:
    pool = HandlerThreads(1)
    try:

        async def on_the_loop() -> int:
            return threading.get_ident()

        here = threading.get_ident()
        assert await pool.run(lambda: anyio.from_thread.run(on_the_loop)) == here
    finally:
        pool.close()


async def test_no_more_than_size_calls_run_at_once() -> None:
    pool = HandlerThreads(3)
    lock = threading.Lock()
    running, peak = [0], [0]
    three_in, release = threading.Event(), threading.Event()

    def held() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            if running[0] == 3:
                three_in.set()
        release.wait(WAIT)
        with lock:
            running[0] -= 1

    try:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(pool.run, held)
                # Three start and block; the other five wait for a thread all along.
                assert await anyio.to_thread.run_sync(three_in.wait, WAIT)
                assert peak[0] == 3
                release.set()
        assert peak[0] == 3
        assert running[0] == 0
    finally:
        release.set()
        pool.close()


async def test_a_cancelled_caller_abandons_its_call_and_a_waiting_one_never_runs() -> None:
    pool = HandlerThreads(1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocking() -> str:
        started.set()
        release.wait(WAIT)
        ran.append("blocking")
        return "dropped"

    try:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, blocking)
                assert await anyio.to_thread.run_sync(started.wait, WAIT)
                with anyio.move_on_after(0.05) as waited:  # no thread is free: it waits
                    await pool.run(lambda: ran.append("queued"))
                assert waited.cancelled_caught
                tg.cancel_scope.cancel()  # the running call's caller gives up too
            release.set()
            assert await pool.run(lambda: "after") == "after"  # the thread is free again
        assert ran == ["blocking"]  # the running call ran on; the queued one was skipped
    finally:
        release.set()
        pool.close()


async def test_closing_lets_every_thread_exit() -> None:
    before = set(threading.enumerate())
    pool = HandlerThreads(4)
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(pool.run, lambda: None)
    # (trio may start a thread of its own meanwhile: only the pool's are counted)
    started = [t for t in set(threading.enumerate()) - before if t.name == "taskit-sync-handler"]
    assert 1 <= len(started) <= 4
    pool.close()
    for thread in started:
        await anyio.to_thread.run_sync(thread.join, WAIT)
        assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.run(lambda: None)


def test_a_size_below_one_is_refused() -> None:
    async def build() -> None:
        HandlerThreads(0)

    with pytest.raises(ValueError, match="size must be >= 1"):
        anyio.run(build)


async def test_a_failing_call_leaves_its_thread_serving_the_next() -> None:
    pool = HandlerThreads(1)
    try:
        for n in range(3):  # the error comes back each time; the one thread is not lost
            with pytest.raises(ZeroDivisionError):
                await pool.run(lambda: 1 // 0)
            assert await pool.run(lambda k=n: k) == n
    finally:
        pool.close()


async def test_running_counts_a_call_until_it_returns_even_once_abandoned() -> None:
    # What a worker reports as handler threads still running when it stops.
    pool = HandlerThreads(1)
    started, release = threading.Event(), threading.Event()

    def held() -> None:
        started.set()
        release.wait(WAIT)

    try:
        assert pool.running == 0
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, held)
                assert await anyio.to_thread.run_sync(started.wait, WAIT)
                assert pool.running == 1
                tg.cancel_scope.cancel()  # its caller gives up: the call runs on
            assert pool.running == 1
            release.set()
            await pool.run(lambda: None)  # one thread: this ran after the abandoned call
        assert pool.running == 0
    finally:
        release.set()
        pool.close()


async def test_a_call_queued_while_another_runs_wakes_an_idle_thread() -> None:
    # On asyncio a call queued while the pool is busy rings an idle thread in the loop's next
    # round, not at once: it must still be rung, and run beside the busy one.
    pool = HandlerThreads(2)
    both_idle = threading.Barrier(2, timeout=WAIT)
    started, release = threading.Event(), threading.Event()

    def held() -> None:
        started.set()
        release.wait(WAIT)

    try:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:  # two threads, then both idle
                tg.start_soon(pool.run, both_idle.wait)
                tg.start_soon(pool.run, both_idle.wait)
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, held)
                assert await anyio.to_thread.run_sync(started.wait, WAIT)
                assert await pool.run(threading.get_ident) is not None  # beside ``held``
                release.set()
    finally:
        release.set()
        pool.close()


async def test_a_thread_idle_too_long_exits_and_a_later_call_starts_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_threads, "IDLE_EXIT", 0.05)
    pool = HandlerThreads(1)
    try:
        first = await pool.run(threading.current_thread)
        await anyio.to_thread.run_sync(first.join, WAIT)
        assert not first.is_alive()
        second = await pool.run(threading.current_thread)
        assert second is not first
        assert second.name == "taskit-sync-handler"
    finally:
        pool.close()


class _LateBell(Bell):
    """A bell whose first wait times out just as it is rung: the race between a thread giving
    up its idle wait and a caller taking that thread for its call."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.waiting, self.time_out = threading.Event(), threading.Event()
        self.first = True

    def wait(self) -> bool:
        if not self.first:
            return super().wait()
        self.first = False
        self.waiting.set()
        self.time_out.wait(WAIT)
        return False  # "timed out", though the caller has rung it by now


async def test_a_thread_rung_as_its_idle_wait_runs_out_takes_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bells: list[_LateBell] = []

    def late_bell(timeout: float) -> _LateBell:
        bells.append(_LateBell(timeout))
        return bells[-1]

    monkeypatch.setattr(_threads, "Bell", late_bell)
    pool = HandlerThreads(1)
    try:
        with anyio.fail_after(WAIT):
            thread = await pool.run(threading.current_thread)
            assert await anyio.to_thread.run_sync(bells[0].waiting.wait, WAIT)
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, lambda: None)  # takes the idle thread, rings it
                await anyio.sleep(0.01)  # (rung on trio now; on asyncio, the next round)
                bells[0].time_out.set()
            # The thread took the call and its ring: it waits on for the next one.
            assert await pool.run(threading.current_thread) is thread
        assert len(bells) == 1  # no second thread was needed
    finally:
        bells[0].time_out.set()
        pool.close()


async def test_a_thread_that_cannot_start_fails_its_call_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = HandlerThreads(1)
    ran: list[str] = []

    def no_socket(timeout: float) -> Bell:
        raise OSError(24, "Too many open files")

    try:
        with monkeypatch.context() as patched:
            patched.setattr(_threads, "Bell", no_socket)
            with pytest.raises(OSError, match="Too many open files"):
                await pool.run(lambda: ran.append("failed call"))
        with anyio.fail_after(WAIT):  # the next call starts its thread, as if none had failed
            assert await pool.run(lambda: "ran") == "ran"
        assert ran == []  # the failed call is not left queued, to run once a thread starts
    finally:
        pool.close()


async def test_calls_beyond_the_idle_threads_start_new_ones_up_to_the_size() -> None:
    # Two idle threads, three calls at once, room for three threads: the third call must not
    # wait for one of the first two to return (a long sync job would hold it back that long).
    pool = HandlerThreads(3)
    two, three = threading.Barrier(2, timeout=WAIT), threading.Barrier(3, timeout=WAIT)
    try:
        with anyio.fail_after(3 * WAIT):
            async with anyio.create_task_group() as tg:  # two threads, then both idle
                tg.start_soon(pool.run, two.wait)
                tg.start_soon(pool.run, two.wait)
            async with anyio.create_task_group() as tg:  # all three must run at once
                for _ in range(3):
                    tg.start_soon(pool.run, three.wait)
    finally:
        three.abort()
        pool.close()
