"""The names a sharded broker (``taskit.broker.sharded``) hands out: lease tokens that name
their shard (``"<k>/<token>"``), and ``list_jobs`` cursors that name their shard, queue and
listing (``"<k>:<mark>:<inner cursor>"``); and how each is read back."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import msgspec

from taskit.broker.browse import Listing
from taskit.job import Lease

__all__ = ["cursor_of", "listing_mark", "named", "split"]


def named(k: int, leases: Sequence[Lease]) -> list[Lease]:
    """``leases`` of shard ``k`` with tokens that name it."""
    return [msgspec.structs.replace(held, token=f"{k}/{held.token}") for held in leases]


def split(token: Any, count: int) -> tuple[int, str] | None:
    """(shard, the shard's own token) of a token ``named`` made; None for any other."""
    if not isinstance(token, str):
        return None
    head, slash, rest = token.partition("/")
    if not slash or not head.isdigit() or len(head) > 2 or int(head) >= count:
        return None
    return int(head), rest


def listing_mark(queue: str, listing: Listing) -> str:
    """What a ``list_jobs`` cursor carries of its queue and listing (CRC-32 in hex), so that
    one made for another is refused even where it starts a shard's part (no inner cursor)."""
    return f"{zlib.crc32(f'{listing.value}:{queue}'.encode()):08x}"


def cursor_of(cursor: str, count: int, mark: str) -> tuple[int, str | None]:
    """(shard, the shard's own cursor or None for its start) of a ``list_jobs`` cursor
    ``"<k>:<mark>:<inner>"`` made for the queue and listing of ``mark``."""
    head, _, rest = cursor.partition(":")
    made_for, colon, inner = rest.partition(":")
    if not colon or not head.isdigit() or len(head) > 2 or int(head) >= count:
        raise ValueError(f"list_jobs: cursor {cursor!r} was not made by this sharded broker")
    if made_for != mark:
        raise ValueError(f"list_jobs: cursor {cursor!r} was made for another queue or listing")
    return int(head), inner or None
