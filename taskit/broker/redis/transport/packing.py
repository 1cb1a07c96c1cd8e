"""Command packing for the fast transports, with hiredis.

``pack`` writes one command as RESP bytes. Text that is not valid UTF-8 (lone surrogates: an id
read from damaged data with ``surrogateescape``) goes out as the very bytes it stood for, so a
damaged id is settled under its own bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis

__all__ = ["pack", "plain"]


def pack(args: Sequence[Any]) -> bytes:
    """``args`` as one RESP command."""
    command: Any = args if type(args) is tuple else tuple(args)  # no copy, no cast(): hot
    try:
        packed: bytes = hiredis.pack_command(command)
    except (TypeError, UnicodeEncodeError):  # a buffer, or text not UTF-8 (see plain)
        packed = hiredis.pack_command(plain(command))
    return packed


def plain(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` as hiredis takes them: buffers as bytes, and text as UTF-8 with lone surrogates
    sent as the bytes they stand for (``surrogateescape``). Only called after a plain pack
    failed: the common call pays nothing."""
    return tuple(
        bytes(a) if isinstance(a, bytearray | memoryview)
        else a.encode("utf-8", "surrogateescape") if isinstance(a, str)
        else a
        for a in args
    )  # fmt: skip
