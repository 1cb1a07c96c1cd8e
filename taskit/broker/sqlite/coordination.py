"""Coordination between processes on SQLite: claims, once keys and announcements, each run
inside one transaction (``Tx``) by ``SqliteBroker``. Expired rows are deleted as calls meet
them, at most ``SWEEP`` a call."""

from __future__ import annotations

from taskit.broker.base import OnceState
from taskit.broker.sqlite.moves import SWEEP
from taskit.broker.sqlite.store import Tx

__all__ = ["announce", "begin_once", "claim", "end_once", "live", "withdraw"]


def claim(tx: Tx, key: str, ttl: float) -> bool:
    """See ``Broker.claim``."""
    tx.conn.execute(
        "DELETE FROM claims WHERE key IN (SELECT key FROM claims WHERE expires <= ? LIMIT ?)",
        (tx.now, SWEEP),
    )
    cur = tx.conn.execute(
        "INSERT INTO claims VALUES (?, ?) ON CONFLICT DO UPDATE SET expires = excluded.expires "
        "WHERE claims.expires <= ?",
        (key, tx.now + ttl, tx.now),
    )
    return cur.rowcount == 1


def _once_value(tx: Tx, key: str) -> str | None:
    """What once key ``key`` holds now (None: free); expired keys are forgotten."""
    tx.conn.execute(
        "DELETE FROM onces WHERE key IN (SELECT key FROM onces WHERE expires <= ? LIMIT ?)",
        (tx.now, SWEEP),
    )
    row = tx.conn.execute(
        "SELECT value FROM onces WHERE key = ? AND expires > ?", (key, tx.now)
    ).fetchone()
    return None if row is None else str(row[0])


def begin_once(tx: Tx, key: str, token: str, hold: float) -> OnceState:
    """See ``Broker.begin_once``."""
    held = _once_value(tx, key)
    if held is None:
        tx.conn.execute(
            "INSERT OR REPLACE INTO onces VALUES (?, ?, ?)", (key, "run:" + token, tx.now + hold)
        )
        return OnceState.TAKEN
    return OnceState.DONE if held.startswith("done:") else OnceState.HELD


def end_once(tx: Tx, key: str, token: str, done_for: float | None) -> bool:
    """See ``Broker.end_once``."""
    running, finished = "run:" + token, "done:" + token
    held = _once_value(tx, key)
    if done_for is None:
        if held == running:
            tx.conn.execute("DELETE FROM onces WHERE key = ?", (key,))
        return held == running
    if held == finished:
        return True
    if held is None or not held.startswith("done:"):
        tx.conn.execute(
            "INSERT OR REPLACE INTO onces VALUES (?, ?, ?)", (key, finished, tx.now + done_for)
        )
    return held == running


def announce(tx: Tx, name: str, record: bytes, ttl: float) -> None:
    """See ``Broker.announce``."""
    tx.conn.execute(
        "INSERT OR REPLACE INTO beats VALUES (?, ?, ?)", (name, bytes(record), tx.now + ttl)
    )


def withdraw(tx: Tx, name: str) -> None:
    """See ``Broker.withdraw``."""
    tx.conn.execute("DELETE FROM beats WHERE name = ?", (name,))


def live(tx: Tx) -> dict[str, bytes]:
    """See ``Broker.live``: expired announcements are deleted."""
    tx.conn.execute("DELETE FROM beats WHERE expires <= ?", (tx.now,))
    rows = tx.conn.execute("SELECT name, record FROM beats ORDER BY name").fetchall()
    return {str(name): bytes(record) for name, record in rows}
