"""hiredis command packing: byte-for-byte what redis-py's own packer sends."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection

from taskit.broker.redis.transport.packing import use_fast_packing


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, "{t}:spec", b"k2", "arg", b"\x00\xff bin", 12345, 1.5),
        ("CLIENT SETNAME", "taskit"),
        ("SET", "k", memoryview(b"view")),
        ("SET", "k", bytearray(b"array")),
        ("SET", "ключ", "значение"),
    ],
)
def test_fast_packing_sends_the_same_bytes(args: tuple[Any, ...]) -> None:
    client = Redis()
    plain = client.connection_pool.connection_class()
    use_fast_packing(client.connection_pool)
    fast = client.connection_pool.connection_class()
    assert type(fast) is not type(plain)
    assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))


def test_the_connection_kind_is_kept_and_wrapped_once() -> None:
    client = Redis(unix_socket_path="/tmp/none.sock")
    use_fast_packing(client.connection_pool)
    first = client.connection_pool.connection_class
    use_fast_packing(client.connection_pool)
    assert client.connection_pool.connection_class is first
    assert issubclass(first, UnixDomainSocketConnection)
    assert not issubclass(Connection, first)
