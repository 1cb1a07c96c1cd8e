"""The memory broker's streams: capped logs read by consumer groups, as Redis streams are.

Each group keeps where it has read to and its pending entries (delivered, not acknowledged) with
the consumer and time of their last delivery; an entry pending longer than ``claim_after`` is
delivered again (as ``XAUTOCLAIM`` does). The length cap is exact here (Redis trims about it).
Call with the broker's lock held; times are on the broker's clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Stream"]


@dataclass
class _Group:
    read_to: int = 0  # the highest entry number delivered (new entries are above it)
    pending: dict[int, float] = field(default_factory=dict)  # entry number -> delivered at


class Stream:
    """One stream: entries numbered from 1, the newest ``maxlen`` kept, and its groups."""

    def __init__(self) -> None:
        self._entries: deque[tuple[int, bytes]] = deque()
        self._last = 0
        self._groups: dict[str, _Group] = {}

    def add(self, entry: bytes, maxlen: int) -> str:
        self._last += 1
        self._entries.append((self._last, bytes(entry)))
        while len(self._entries) > maxlen:
            self._entries.popleft()
        return _id(self._last)

    def read(
        self, group: str, count: int, claim_after: float, now: float
    ) -> list[tuple[str, bytes]]:
        mine = self._groups.setdefault(group, _Group())
        kept = dict(self._entries)
        for number in [n for n in mine.pending if n not in kept]:
            del mine.pending[number]  # trimmed away while pending: never delivered again
        stale = sorted(n for n, at in mine.pending.items() if now - at >= claim_after)
        fresh = [n for n, _ in self._entries if n > mine.read_to]
        chosen = (stale + fresh)[:count]
        for number in chosen:
            mine.pending[number] = now
            mine.read_to = max(mine.read_to, number)
        return [(_id(n), kept[n]) for n in chosen]

    def tail(self, after: str | None, count: int) -> list[tuple[str, bytes]]:
        """Up to ``count`` entries after id ``after``, oldest first; with ``after`` None, the
        newest ``count``. Nothing is delivered. ``ValueError`` for an id this stream never
        made."""
        if after is None:
            chosen = list(self._entries)[-count:]
        else:
            number = _number(after)
            if number is None:
                raise ValueError(f"stream_tail: after must be an entry id, got {after!r}")
            chosen = [(n, entry) for n, entry in self._entries if n > number][:count]
        return [(_id(n), entry) for n, entry in chosen]

    def ack(self, group: str, ids: Sequence[str]) -> int:
        mine = self._groups.get(group)
        if mine is None:
            return 0
        done = 0
        for entry_id in ids:
            number = _number(entry_id)
            if number is not None and mine.pending.pop(number, None) is not None:
                done += 1
        return done


def _id(number: int) -> str:
    return f"0-{number}"


def _number(entry_id: str) -> int | None:
    head, _, tail = str(entry_id).partition("-")
    return int(tail) if head == "0" and tail.isdigit() else None
