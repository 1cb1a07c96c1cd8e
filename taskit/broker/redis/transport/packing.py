"""Faster command packing for redis-py's asyncio client, when hiredis is installed.

redis-py packs commands for its asyncio connections in Python (its sync client already uses
hiredis). A settle or reserve call carries several arguments per job, so packing was a large
share of a worker's CPU per job; ``hiredis.pack_command`` does the same in C, about four times
faster. Without hiredis, the pool is left as redis-py made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool

_pack: Callable[[Any], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - hiredis is part of the `redis` extra
    _pack = None

__all__ = ["plain", "use_fast_packing"]


def plain(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` as hiredis takes them: buffers as bytes, and text as UTF-8 with lone surrogates
    sent as the bytes they stand for (``surrogateescape``), so that an id read from Redis that is
    not UTF-8 (damaged data) goes back as the very bytes it was. Only called after a plain pack
    failed: the common call pays nothing."""
    return tuple(
        bytes(a) if isinstance(a, bytearray | memoryview)
        else a.encode("utf-8", "surrogateescape") if isinstance(a, str)
        else a
        for a in args
    )  # fmt: skip


def use_fast_packing(pool: ConnectionPool) -> None:
    """Make ``pool``'s future connections pack commands with hiredis (if it is installed)."""
    if _pack is not None and not getattr(pool.connection_class, "_taskit_packing", False):
        pool.connection_class = _packing_with(pool.connection_class, _pack)


def _packing_with(
    base: type[AbstractConnection], pack: Callable[[Any], bytes]
) -> type[AbstractConnection]:
    class HiredisPacking(base):  # type: ignore[valid-type,misc]
        _taskit_packing = True

        def pack_command(self, *args: Any) -> list[bytes]:
            head = args[0]
            words = head.split() if isinstance(head, str | bytes) else [head]
            if len(words) > 1:  # "CLIENT SETNAME"-style names go out as separate words
                args = (*words, *args[1:])
            try:
                return [pack(args)]
            except (TypeError, UnicodeEncodeError):  # see plain
                return [pack(plain(args))]

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"HiredisPacking{base.__name__}"
    return HiredisPacking
