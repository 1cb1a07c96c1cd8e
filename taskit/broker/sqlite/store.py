"""The SQLite broker's connection: opened once per broker, every call one transaction.

A ``Store`` opens its database file on first use in WAL mode with ``synchronous=NORMAL`` (a
commit survives a crash of the process, and power loss from the next checkpoint on) and a
``busy_timeout``, and creates or checks its schema (``schema.ensure``). Each broker call is one
function run inside one ``BEGIN IMMEDIATE`` transaction: the write lock is taken at the start,
so the call is atomic across processes (as one Lua script is on Redis) and never has to upgrade
a read lock and fail.

``run`` does it off the event loop (``anyio.to_thread.run_sync``, one call at a time per broker
through a ``CapacityLimiter(1)``), so a call waiting for another process's write lock never
blocks the loop; it works under asyncio and trio. ``run_blocking`` does it in the calling
thread, on a connection of its own (``enqueue_blocking``). ``close`` closes both; the next call
opens them again.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from taskit.broker.sqlite.schema import ensure
from taskit.clock import Clock
from taskit.errors import BrokerError

__all__ = ["LOCK_WAIT", "Store", "Tx"]

#: Seconds a transaction waits for another process's write lock before it fails.
LOCK_WAIT = 30.0

_T = TypeVar("_T")


@dataclass(slots=True)
class Tx:
    """One transaction: its connection, the broker's time at its start, and whether it made
    jobs ready (reserves are then woken after the commit)."""

    conn: sqlite3.Connection
    now: float
    ready: bool = False


class _Connection:
    """One connection, opened on first use, used by one thread at a time."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self.lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _open(self._path)
        return self._conn

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class Store:
    """The database at ``path``, its transactions timed by ``clock``."""

    def __init__(self, path: str, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._async = _Connection(path)
        self._sync = _Connection(path)
        self._limiters: weakref.WeakKeyDictionary[object, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, fn: Callable[[Tx], _T]) -> tuple[_T, bool]:
        """``fn`` in one transaction, in a worker thread; its result, and whether it made jobs
        ready. An exception rolls everything back and propagates."""
        return await anyio.to_thread.run_sync(self._call, self._async, fn, limiter=self._limiter())

    def run_blocking(self, fn: Callable[[Tx], _T]) -> tuple[_T, bool]:
        """``run`` in the calling thread, on the store's second connection."""
        return self._call(self._sync, fn)

    def close(self) -> None:
        self._async.close()
        self._sync.close()

    def _limiter(self) -> anyio.CapacityLimiter:
        # One per event loop: a limiter belongs to the loop that made it.
        loop = anyio.lowlevel.current_token().native_token
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(1)
        return limiter

    def _call(self, connection: _Connection, fn: Callable[[Tx], _T]) -> tuple[_T, bool]:
        with connection.lock:
            try:
                conn = connection.get()
                transaction(conn)
                try:
                    tx = Tx(conn, self._clock.time())
                    out = fn(tx)
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            except sqlite3.Error as exc:  # disk full, I/O error, a damaged file...
                raise BrokerError(f"SQLite broker {self.path!r}: {exc}") from exc
            return out, tx.ready


def transaction(conn: sqlite3.Connection) -> None:
    """Begin a write transaction; ``BrokerError`` if the write lock did not come in time."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise BrokerError(f"SQLite broker: cannot take the database's write lock: {exc}") from exc


def _open(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {LOCK_WAIT * 1000:.0f}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise BrokerError(f"SQLite broker: {path!r} cannot use WAL (journal mode {mode!r})")
        conn.execute("PRAGMA synchronous = NORMAL")
        transaction(conn)
        try:
            ensure(conn, path)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn
