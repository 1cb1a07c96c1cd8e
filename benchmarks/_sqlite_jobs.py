"""The probe's native-SQL job table for issue 18: the least a SQLite broker's hot path needs.

One ``jobs`` table. ``seq`` is the rowid (``INTEGER PRIMARY KEY``: SQLite hands it out, one
higher than the largest, inside the writer's transaction), so FIFO order costs no counter; the
job's ``id`` is ``UNIQUE`` (the lookup key of settle, cancel and unique ids). States: 0 ready,
1 scheduled, 2 running (leased), 3 done. Partial indexes cover what each operation looks up,
each holding only the rows of its state: ready jobs by (queue, priority desc, seq), scheduled
ones by due time, leases by deadline (for reclaim), done ones by expiry (for the result TTL).

Every operation is one ``BEGIN IMMEDIATE`` transaction (the write lock taken at the start, so
no transaction ever has to upgrade a read lock and fail): WAL, ``synchronous=NORMAL`` (a commit
is durable against a crash of the process, and against power loss from the next checkpoint on).
Waiting for the write lock, two ways: ``busy_timeout`` (``lock="timeout"``: SQLite's own busy
handler, which sleeps 1, 2, 5, 10, 15, 20, 25, ... ms between tries), or ``lock="retry"``:
``busy_timeout`` 0 and ``BEGIN IMMEDIATE`` retried after sleeps of 50 µs doubling to 1 ms.
A settle either marks the row done (an UPDATE) or
moves it to a ``done`` table (a DELETE and an INSERT); both are measured.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

__all__ = ["SCHEMA", "JobTable", "Reserved"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    state INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,
    token TEXT,
    deadline REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    expires REAL,
    spec BLOB NOT NULL,
    result BLOB
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, priority DESC, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due) WHERE state = 1;
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (deadline) WHERE state = 2;
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires) WHERE state = 3;
CREATE TABLE IF NOT EXISTS done (
    id TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL,
    expires REAL NOT NULL,
    spec BLOB NOT NULL,
    result BLOB
);
CREATE INDEX IF NOT EXISTS done_expiry ON done (expires);
"""

_INSERT = "INSERT INTO jobs (id, queue, state, priority, due, spec) VALUES (?, ?, ?, ?, ?, ?)"
_PROMOTE = "UPDATE jobs SET state = 0 WHERE state = 1 AND due <= ?"
_RESERVE = """
UPDATE jobs SET state = 2, token = lower(hex(randomblob(16))), deadline = ?,
    attempts = attempts + 1
WHERE seq IN (SELECT seq FROM jobs WHERE state = 0 AND queue = ?
              ORDER BY priority DESC, seq LIMIT ?)
RETURNING id, token, attempts, spec
"""
_MARK_DONE = """
UPDATE jobs SET state = 3, token = NULL, deadline = NULL, expires = ?, result = ?
WHERE id = ? AND token = ? AND state = 2
"""
_TAKE = "DELETE FROM jobs WHERE id = ? AND token = ? AND state = 2 RETURNING attempts, spec"
_PUT_DONE = "INSERT INTO done (id, attempts, expires, spec, result) VALUES (?, ?, ?, ?, ?)"
RESULT_TTL = 3600.0
LOCK_WAIT = 10.0  # seconds a transaction waits for the write lock before it fails


@dataclass(frozen=True)
class Reserved:
    id: str
    token: str
    attempts: int
    spec: bytes


class JobTable:
    """One connection to the job table; each method one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, path: str, sync: str = "NORMAL", lock: str = "timeout") -> None:
        if lock not in ("timeout", "retry"):
            raise ValueError(f"lock must be 'timeout' or 'retry', not {lock!r}")
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.retry = lock == "retry"
        self.conn.execute(f"PRAGMA busy_timeout = {0 if self.retry else LOCK_WAIT * 1000:.0f}")
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"{path}: journal_mode is {mode!r}, not 'wal'")
        if sync not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {sync!r}")
        self.conn.execute(f"PRAGMA synchronous = {sync}")

    def create(self) -> None:
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def data_version(self) -> int:
        """Changes when another connection commits (``PRAGMA data_version``): a read, no lock."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def _begin(self) -> None:
        if not self.retry:
            self.conn.execute("BEGIN IMMEDIATE")
            return
        pause, end = 50e-6, time.monotonic() + LOCK_WAIT
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > end:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def _write(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        conn = self.conn
        self._begin()
        try:
            cur = conn.execute(sql, params)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return cur

    def enqueue(self, job_id: str, spec: bytes, queue: str = "default", delay: float = 0.0) -> None:
        now = time.time()
        self._write(_INSERT, (job_id, queue, 1 if delay > 0 else 0, 0, now + delay, spec))

    def enqueue_many(self, jobs: list[tuple[str, bytes]], queue: str = "default") -> None:
        now = time.time()
        conn = self.conn
        self._begin()
        try:
            conn.executemany(_INSERT, [(i, queue, 0, 0, now, s) for i, s in jobs])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def reserve(self, limit: int, queue: str = "default", lease: float = 60.0) -> list[Reserved]:
        """Up to ``limit`` ready jobs leased, highest priority first and FIFO among equals
        (scheduled jobs that fell due made ready first, in the same transaction)."""
        now = time.time()
        conn = self.conn
        self._begin()
        try:
            conn.execute(_PROMOTE, (now,))
            rows = conn.execute(_RESERVE, (now + lease, queue, limit)).fetchall()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return [Reserved(*row) for row in rows]

    def complete(self, job: Reserved, result: bytes) -> bool:
        """Mark the job done under its token; ``False`` when the token is not the current one."""
        cur = self._write(_MARK_DONE, (time.time() + RESULT_TTL, result, job.id, job.token))
        return cur.rowcount == 1

    def complete_move(self, job: Reserved, result: bytes) -> bool:
        """The same, moving the row to the ``done`` table."""
        conn = self.conn
        self._begin()
        try:
            row = conn.execute(_TAKE, (job.id, job.token)).fetchone()
            if row is not None:
                conn.execute(_PUT_DONE, (job.id, row[0], time.time() + RESULT_TTL, row[1], result))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return row is not None

    def count(self, state: int) -> int:
        return int(self.conn.execute("SELECT count(*) FROM jobs WHERE state = ?", (state,))
                   .fetchone()[0])  # fmt: skip

    def done_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM done").fetchone()[0])
