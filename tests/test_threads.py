"""``HandlerThreads``, where a worker runs its sync handlers: values and errors come back to the
caller, the caller's contextvars reach the thread, concurrency is capped, a cancelled caller
abandons its call, and closing lets every thread go; on asyncio and trio."""

from __future__ import annotations

import contextvars
import threading

import anyio
import anyio.from_thread
import pytest

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
    started = [t for t in threading.enumerate() if t not in before]
    assert started
    assert all(t.name == "taskit-sync-handler" for t in started)
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
