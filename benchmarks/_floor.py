"""The floor of a one-call-per-job enqueue: bare ``PING`` round trips, one at a time, over the
leanest asyncio connection there is (a ``Protocol``, no client library). No enqueue that waits for
Redis's answer can go faster from one producer on the same event loop; the runner measures it in
the same moment as each system's single enqueues, so their rates can be read against it."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

__all__ = ["ping_rate"]

_PING = b"*1\r\n$4\r\nPING\r\n"
_PONG = b"+PONG\r\n"


class _Pinger(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: asyncio.Future[None] | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.buffer.endswith(_PONG) and self.waiting is not None:
            self.buffer = b""
            self.waiting.set_result(None)

    async def ping(self) -> None:
        assert self.transport is not None
        self.waiting = asyncio.get_running_loop().create_future()
        self.transport.write(_PING)
        await self.waiting


async def ping_rate(url: str, count: int, warmup: int = 100) -> float:
    """Round trips a second of ``count`` PINGs awaited one after another."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    transport, pinger = await loop.create_connection(
        _Pinger, parts.hostname or "127.0.0.1", parts.port or 6379
    )
    try:
        for _ in range(warmup):
            await pinger.ping()
        began = time.perf_counter()
        for _ in range(count):
            await pinger.ping()
        return count / (time.perf_counter() - began)
    finally:
        transport.close()
