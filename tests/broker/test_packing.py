"""The fast transport's command packing (hiredis): byte-for-byte what redis-py's own packer
sends, and text that is not UTF-8 sent as the bytes it stood for."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection

from taskit.broker.redis.transport.packing import pack


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, "{t}:spec", b"k2", "arg", b"\x00\xff bin", 12345, 1.5),
        ("SET", "k", memoryview(b"view")),
        ("SET", "k", bytearray(b"array")),
        ("SET", "ключ", "значение"),
    ],
)
def test_packing_sends_the_same_bytes_as_redis_py(args: tuple[Any, ...]) -> None:
    assert pack(args) == b"".join(Connection().pack_command(*args))


def test_a_damaged_id_goes_back_as_its_own_bytes() -> None:
    damaged = b"\xff\xfe-id".decode(errors="surrogateescape")
    assert pack(("HGET", "k", damaged)) == pack(("HGET", "k", b"\xff\xfe-id"))
