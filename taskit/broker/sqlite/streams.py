"""Streams on SQLite: capped logs read by consumer groups, as the memory broker keeps them
(``Broker.stream_add`` and the rest). Entries are numbered from 1 per stream, ids ``0-<n>``;
the length cap is exact. Each function runs inside the caller's transaction (``Tx``)."""

from __future__ import annotations

from collections.abc import Sequence

from taskit.broker.sqlite.store import Tx

__all__ = ["ack", "add", "read"]


def add(tx: Tx, stream: str, entry: bytes, maxlen: int) -> str:
    """Append ``entry``; keep the newest ``maxlen``."""
    (last,) = tx.conn.execute(
        "SELECT coalesce(max(n), 0) FROM stream_entries WHERE stream = ?", (stream,)
    ).fetchone()
    number = int(last) + 1
    tx.conn.execute("INSERT INTO stream_entries VALUES (?, ?, ?)", (stream, number, bytes(entry)))
    tx.conn.execute(
        "DELETE FROM stream_entries WHERE stream = ? AND n <= ?", (stream, number - maxlen)
    )
    return _id(number)


def read(
    tx: Tx, stream: str, group: str, count: int, claim_after: float
) -> list[tuple[str, bytes]]:
    """Deliver up to ``count`` entries to ``group``: those pending ``claim_after`` seconds or
    more first, then new ones."""
    conn = tx.conn
    conn.execute("INSERT OR IGNORE INTO stream_groups VALUES (?, ?, 0)", (stream, group))
    (read_to,) = conn.execute(
        "SELECT read_to FROM stream_groups WHERE stream = ? AND grp = ?", (stream, group)
    ).fetchone()
    conn.execute(  # trimmed away while pending: never delivered again
        "DELETE FROM stream_pending WHERE stream = ? AND grp = ? AND n NOT IN "
        "(SELECT n FROM stream_entries WHERE stream = ?)",
        (stream, group, stream),
    )
    stale = conn.execute(
        "SELECT p.n, e.entry FROM stream_pending p JOIN stream_entries e "
        "ON e.stream = p.stream AND e.n = p.n "
        "WHERE p.stream = ? AND p.grp = ? AND ? - p.at >= ? ORDER BY p.n LIMIT ?",
        (stream, group, tx.now, claim_after, count),
    ).fetchall()
    fresh = conn.execute(
        "SELECT n, entry FROM stream_entries WHERE stream = ? AND n > ? ORDER BY n LIMIT ?",
        (stream, read_to, count - len(stale)),
    ).fetchall()
    chosen = [*stale, *fresh]
    conn.executemany(
        "INSERT OR REPLACE INTO stream_pending VALUES (?, ?, ?, ?)",
        [(stream, group, n, tx.now) for n, _ in chosen],
    )
    if fresh:
        conn.execute(
            "UPDATE stream_groups SET read_to = ? WHERE stream = ? AND grp = ?",
            (max(int(read_to), fresh[-1][0]), stream, group),
        )
    return [(_id(n), bytes(entry)) for n, entry in chosen]


def ack(tx: Tx, stream: str, group: str, ids: Sequence[str]) -> int:
    """Acknowledge ``ids`` for ``group``: how many were pending."""
    done = 0
    for entry_id in ids:
        number = _number(entry_id)
        if number is not None:
            done += tx.conn.execute(
                "DELETE FROM stream_pending WHERE stream = ? AND grp = ? AND n = ?",
                (stream, group, number),
            ).rowcount
    return done


def _id(number: int) -> str:
    return f"0-{number}"


def _number(entry_id: str) -> int | None:
    head, _, tail = str(entry_id).partition("-")
    return int(tail) if head == "0" and tail.isdigit() else None
