"""The Redis broker's streams (``Broker.stream_add``, ``stream_read``, ``stream_ack``) as plain
Redis stream commands: ``XADD ... MAXLEN ~``, ``XAUTOCLAIM`` then ``XREADGROUP``, ``XACK``.

No Lua: each command is atomic on its own, and a read needs no more. Its two steps (take over
stale pending entries, then read new ones) may interleave with another consumer's; each entry
still goes to one consumer at a time, which is all the contract promises. A group is made
(``XGROUP CREATE ... 0 MKSTREAM``) when a read finds it missing. ``XAUTOCLAIM`` needs Redis 6.2.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from taskit.errors import BrokerError

__all__ = ["FIELD", "StreamCommands"]

#: The one field of each entry.
FIELD = b"e"

Execute = Callable[..., Awaitable[Any]]


class StreamCommands:
    """The stream calls on one key, through ``execute(*command)`` (guarded by the caller)."""

    def __init__(self, execute: Execute, key: str) -> None:
        self._execute = execute
        self._key = key

    async def add(self, entry: bytes, maxlen: int) -> str:
        reply = await self._execute("XADD", self._key, "MAXLEN", "~", maxlen, "*", FIELD, entry)
        return _text(reply)

    async def read(
        self, group: str, consumer: str, count: int, idle_ms: int
    ) -> list[tuple[str, bytes]]:
        try:
            return await self._read(group, consumer, count, idle_ms)
        except BrokerError as exc:
            if "NOGROUP" not in str(exc):
                raise
        try:
            await self._execute("XGROUP", "CREATE", self._key, group, "0", "MKSTREAM")
        except BrokerError as exc:
            if "BUSYGROUP" not in str(exc):  # another consumer made it meanwhile: fine
                raise
        return await self._read(group, consumer, count, idle_ms)

    async def _read(
        self, group: str, consumer: str, count: int, idle_ms: int
    ) -> list[tuple[str, bytes]]:
        claimed = await self._execute(
            "XAUTOCLAIM", self._key, group, consumer, idle_ms, "0-0", "COUNT", count
        )
        got = _entries(claimed[1])
        if len(got) < count:
            reply = await self._execute(
                "XREADGROUP", "GROUP", group, consumer, "COUNT", count - len(got),
                "STREAMS", self._key, ">",
            )  # fmt: skip
            # One stream: ``[[key, entries]]``, or ``{key: entries}`` from a RESP3 client.
            for entries in (reply or {}).values() if isinstance(reply, dict) else reply or ():
                got.extend(_entries(entries if isinstance(reply, dict) else entries[1]))
        return got

    async def ack(self, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self._execute("XACK", self._key, group, *ids))


def _entries(raw: Any) -> list[tuple[str, bytes]]:
    """``[[id, [field, value, ...]], ...]`` as ``(id, entry)``; an entry trimmed away while
    pending (Redis 6.2 answers its fields as nil) or without the field is left out."""
    found = []
    for entry_id, fields in raw or ():
        if not fields:
            continue
        if isinstance(fields, dict):
            values = fields
        else:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
        if FIELD in values:
            found.append((_text(entry_id), bytes(values[FIELD])))
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
