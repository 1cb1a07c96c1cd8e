"""The SQLite broker's connection thread (``taskit.broker.sqlite.store``): calls that queue up
while it is busy share one transaction, each still all or none, each answered after the
commit, in the order they called; the first call after ``close`` opens the file again."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from taskit.broker.sqlite.store import Store, Tx
from taskit.clock import SystemClock
from taskit.errors import BrokerError
from tests.broker._store_calls import pause as _pause
from tests.broker._store_calls import paused as _paused

pytestmark = pytest.mark.anyio


async def test_queued_calls_share_a_commit_and_each_is_all_or_none(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())
    entered, gate = threading.Event(), threading.Event()
    commits: list[int] = []

    def first(tx: Tx) -> str:
        tx.conn.set_trace_callback(lambda sql: commits.append(1) if sql == "COMMIT" else None)
        entered.set()
        gate.wait(10)
        return "first"

    def refused(tx: Tx) -> None:
        tx.conn.execute("INSERT INTO paused VALUES ('refused')")
        raise ValueError("refused")

    def broken(tx: Tx) -> None:
        tx.conn.execute("INSERT INTO paused VALUES ('broken')")
        tx.conn.execute("SELECT * FROM no_such_table")

    called: list[str] = []
    answers: dict[str, object] = {}  # in the order the callers resumed

    async def call(name: str, fn: Callable[[Tx], object]) -> None:
        called.append(name)  # ``run`` queues the call before it first waits
        try:
            answers[name] = (await store.run(fn))[0]
        except Exception as exc:
            answers[name] = exc

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "first", first)
            await anyio.to_thread.run_sync(entered.wait)
            for name, fn in (("a", _pause("a")), ("refused", refused), ("broken", broken),
                             ("b", _pause("b"))):  # fmt: skip
                tg.start_soon(call, name, fn)
            await anyio.wait_all_tasks_blocked()  # all four are queued behind ``first``
            gate.set()
    finally:
        store.close()

    assert answers["first"] == "first"
    assert answers["a"] == "a"
    assert answers["b"] == "b"
    assert isinstance(answers["refused"], ValueError)
    assert isinstance(answers["broken"], BrokerError)
    assert "no_such_table" in str(answers["broken"])
    assert _paused(db) == {"a", "b"}  # the failed calls' own writes were undone
    assert len(commits) == 2  # ``first`` alone, then the four queued behind it together
    assert list(answers) == called  # each resumed after the ones that called before it


async def test_a_call_after_close_opens_the_file_again(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = Store(str(db), SystemClock())
    assert (await store.run(_pause("a")))[0] == "a"
    store.close()
    assert (await store.run(_pause("b")))[0] == "b"
    store.close()
    assert _paused(db) == {"a", "b"}


@pytest.mark.parametrize("thread", [True, False], ids=["connection-thread", "blocking"])
async def test_a_commit_that_fails_rolls_back_and_the_store_goes_on(
    tmp_path: Path, thread: bool
) -> None:
    # SQLite leaves a transaction open when its COMMIT fails (disk full, I/O error, busy):
    # kept open, every later BEGIN would fail ("cannot start a transaction within a
    # transaction") until the process restarts.
    store = Store(str(tmp_path / "store.db"), SystemClock())

    def commit_refused(tx: Tx) -> None:
        denied: list[str] = []

        def authorize(action: int, arg: str | None, *_: object) -> int:
            if action == sqlite3.SQLITE_TRANSACTION and arg == "COMMIT" and not denied:
                denied.append(arg)
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        tx.conn.execute("INSERT INTO paused VALUES ('lost')")
        tx.conn.set_authorizer(authorize)  # the COMMIT of this transaction fails

    def count(tx: Tx) -> int:
        tx.conn.set_authorizer(None)
        return int(tx.conn.execute("SELECT count(*) FROM paused").fetchone()[0])

    async def call(fn: Callable[[Tx], object]) -> object:
        if thread:
            return (await store.run(fn))[0]
        return (await anyio.to_thread.run_sync(store.run_blocking, fn))[0]

    try:
        with pytest.raises(BrokerError, match="not authorized"):
            await call(commit_refused)
        assert await call(count) == 0  # the store goes on; the failed commit changed nothing
    finally:
        store.close()
