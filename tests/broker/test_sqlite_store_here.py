"""Small calls on the event loop (``Store.run(..., small=True)``): run there only when they
cannot wait (the write lock free at once, nothing queued for the thread), otherwise on the
thread, in order; each still all or none; the WAL is checkpointed by the thread. The same
from any thread (``Store.run_now``, a chain's step): done at once or not at all."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from taskit.broker.sqlite import store as store_module
from taskit.broker.sqlite.store import Store, Tx
from taskit.clock import SystemClock
from taskit.errors import BrokerError
from tests._fork import forked
from tests.broker._store_calls import pause as _pause
from tests.broker._store_calls import paused as _paused

pytestmark = pytest.mark.anyio


async def _opened(store: Store) -> None:
    """The first call goes to the thread (it checks the schema); small calls may follow here."""
    await store.run(lambda tx: None)


async def test_a_small_call_runs_on_the_loop_when_nothing_waits(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())
    threads: list[int] = []
    try:
        await _opened(store)
        out, ready = await store.run(_pause("a", threads), small=True)
        big, _ = await store.run(_pause("b", threads))  # not small: always the thread
    finally:
        store.close()
    assert (out, ready, big) == ("a", False, "b")
    assert threads[0] == threading.get_ident()
    assert threads[1] != threading.get_ident()
    assert _paused(db) == {"a", "b"}


async def test_a_held_write_lock_sends_a_small_call_to_the_thread(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())
    threads: list[int] = []
    other = None
    try:
        await _opened(store)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer, as far as the store knows
        ticks = 0
        done = anyio.Event()

        async def small() -> None:
            await store.run(_pause("a", threads), small=True)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(small)
            while ticks < 5:  # the loop keeps running while the call waits for the lock
                await anyio.sleep(0.01)
                ticks += 1
            assert not done.is_set()
            other.rollback()
    finally:
        if other is not None:
            other.close()
        store.close()
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()
    assert _paused(db) == {"a"}


async def test_a_small_call_waits_behind_a_call_queued_before_it(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())
    entered, gate = threading.Event(), threading.Event()
    finished: list[str] = []

    def first(tx: Tx) -> str:
        entered.set()
        gate.wait(10)
        tx.conn.execute("INSERT INTO paused VALUES ('first')")
        return "first"

    async def call(name: str, fn: Callable[[Tx], str], small: bool) -> None:
        finished.append((await store.run(fn, small=small))[0])

    try:
        await _opened(store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "first", first, False)
            await anyio.to_thread.run_sync(entered.wait)
            tg.start_soon(call, "second", _pause("second"), True)
            await anyio.wait_all_tasks_blocked()
            assert finished == []  # not run on the loop past ``first``
            gate.set()
    finally:
        store.close()
    assert finished == ["first", "second"]
    assert _paused(db) == {"first", "second"}


async def test_a_failing_small_call_is_rolled_back_and_raises(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())

    def refused(tx: Tx) -> None:
        tx.conn.execute("INSERT INTO paused VALUES ('refused')")
        raise ValueError("refused")

    def broken(tx: Tx) -> None:
        tx.conn.execute("INSERT INTO paused VALUES ('broken')")
        tx.conn.execute("SELECT * FROM no_such_table")

    try:
        await _opened(store)
        with pytest.raises(ValueError, match="refused"):
            await store.run(refused, small=True)
        with pytest.raises(BrokerError, match="no_such_table"):
            await store.run(broken, small=True)
        assert (await store.run(_pause("after"), small=True))[0] == "after"
    finally:
        store.close()
    assert _paused(db) == {"after"}


async def test_the_thread_checkpoints_what_the_loop_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY", 4)
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())
    checkpoints: list[str] = []

    def trace(tx: Tx) -> None:  # on the thread's own connection
        tx.conn.set_trace_callback(
            lambda sql: checkpoints.append(sql) if "wal_checkpoint" in sql else None
        )

    try:
        await store.run(trace)
        for i in range(9):
            await store.run(_pause(f"q{i}"), small=True)
        await store.run(lambda tx: None)  # the thread serves in order: both checkpoints ran
    finally:
        store.close()
    assert len(checkpoints) == 2
    assert len(_paused(db)) == 9


async def test_a_small_call_cancelled_before_it_starts_does_nothing(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())
    try:
        await _opened(store)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.run(_pause("never"), small=True)
        assert scope.cancelled_caught
    finally:
        store.close()
    assert _paused(db) == set()


async def test_at_synchronous_full_every_call_runs_on_the_thread(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock(), full=True)  # a commit syncs: never on the loop
    threads: list[int] = []
    try:
        await _opened(store)
        await store.run(_pause("a", threads), small=True)
    finally:
        store.close()
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()
    assert _paused(db) == {"a"}


async def test_an_error_the_sqlite3_module_raises_itself_is_a_broker_error_here_too(
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())

    def read(tx: Tx) -> list[tuple[str]]:  # sqlite3's own OperationalError, with no result code
        return tx.conn.execute("SELECT queue FROM paused").fetchall()

    try:
        undecodable = "INSERT INTO paused VALUES (CAST(X'FF' AS TEXT))"  # a damaged row
        await store.run(lambda tx: tx.conn.execute(undecodable))
        for small in (False, True):
            with pytest.raises(BrokerError, match="Could not decode to UTF-8"):
                await store.run(read, small=small)
    finally:
        store.close()


@pytest.mark.parametrize("code", [5, 6, 261], ids=["busy", "locked", "busy-recovery"])
async def test_a_small_call_refused_a_lock_midway_is_run_again_on_the_thread(
    tmp_path: Path, code: int
) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())
    threads: list[int] = []

    def refused_once(tx: Tx) -> str:
        threads.append(threading.get_ident())
        tx.conn.execute("INSERT INTO paused VALUES (?)", (f"try{len(threads)}",))
        if len(threads) == 1:
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = code
            raise busy
        return "done"

    try:
        await _opened(store)
        assert (await store.run(refused_once, small=True))[0] == "done"
    finally:
        store.close()
    assert threads[0] == threading.get_ident()
    assert threads[1] != threading.get_ident()
    assert _paused(db) == {"try2"}  # the loop's try rolled back


def test_a_forked_process_opens_its_own_blocking_connection(tmp_path: Path) -> None:
    """gunicorn --preload: a sync enqueue in the parent, then the children write too."""
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())

    def child() -> int:
        store.run_blocking(_pause(f"child{os.getpid()}"))
        return 3 if store._sync is parent else 0  # 3: the parent's connection, inherited

    try:
        store.run_blocking(_pause("parent"))
        parent = store._sync
        pid, wait = forked(child)
        assert wait() == 0
        assert store._sync is parent  # the parent's own stays its own
        store.run_blocking(_pause("parent again"))
    finally:
        store.close()
    assert _paused(db) == {"parent", f"child{pid}", "parent again"}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_run_now_from_another_thread_is_done_at_once_or_not_at_all(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())
    threads: list[int] = []
    other = None
    try:
        await _opened(store)
        done = await anyio.to_thread.run_sync(store.run_now, _pause("a", threads))
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer: never waited for
        held = await anyio.to_thread.run_sync(store.run_now, _pause("b", threads))
        other.execute("COMMIT")
    finally:
        if other is not None:
            other.close()
        store.close()
    assert done == ("a", False)
    assert held is None
    assert threads == [threads[0]]  # "b" never ran
    assert threads[0] != threading.get_ident()
    assert _paused(db) == {"a"}


async def test_run_now_does_nothing_at_synchronous_full(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock(), full=True)
    threads: list[int] = []
    try:
        await _opened(store)
        assert await anyio.to_thread.run_sync(store.run_now, _pause("a", threads)) is None
    finally:
        store.close()
    assert threads == []
    assert _paused(db) == set()
