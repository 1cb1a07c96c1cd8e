"""Calls for the SQLite store's tests: each pauses a queue (a row of the ``paused`` table, the
smallest write there is), and what the file holds afterwards."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from taskit.broker.sqlite.store import Tx

__all__ = ["pause", "paused"]


def pause(name: str, threads: list[int] | None = None) -> Callable[[Tx], str]:
    """A call that pauses queue ``name`` and returns it; notes the thread it ran on in
    ``threads`` (if given)."""

    def fn(tx: Tx) -> str:
        if threads is not None:
            threads.append(threading.get_ident())
        tx.conn.execute("INSERT INTO paused VALUES (?)", (name,))
        return name

    return fn


def paused(db: Path) -> set[str]:
    """The queues paused in the database file ``db``, read on a connection of its own."""
    with sqlite3.connect(db) as conn:
        return {queue for (queue,) in conn.execute("SELECT queue FROM paused")}
