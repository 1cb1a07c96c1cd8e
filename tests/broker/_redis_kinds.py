"""The Redis kinds of the broker conformance suite: a real server and fakeredis (with Lua).

``open_redis_harness(kind, request)`` yields a harness whose broker works under a key prefix of
its own, deleted afterwards. On a real server time cannot be faked, so ``advance`` sleeps.
The real-server kind takes the ``redis_url`` fixture: it fails under ``CI=true`` when no Redis
answers, and skips elsewhere.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from taskit.broker.redis import RedisBroker

# (kind, anyio backend) pairs: redis-py runs on asyncio only.
REDIS_KINDS: list[tuple[str, str]] = [("redis", "asyncio"), ("fakeredis", "asyncio")]


@dataclass
class RedisHarness:
    broker: RedisBroker
    #: A separate client on the same data, for tests that look at or tamper with keys.
    client: Redis
    kind: str

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the server's clock (a real sleep)."""
        await anyio.sleep(seconds)


@asynccontextmanager
async def open_redis_harness(
    kind: str, request: pytest.FixtureRequest, *, result_ttl: float = 60.0
) -> AsyncIterator[RedisHarness]:
    """A harness on ``kind`` ("redis" or "fakeredis") under a fresh key prefix."""
    prefix = f"taskit-test-{uuid.uuid4().hex[:12]}"
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        broker = RedisBroker(url, prefix=prefix, result_ttl=result_ttl)
        client = Redis.from_url(url)
    elif kind == "fakeredis":
        import fakeredis

        server = fakeredis.FakeServer()

        def connect() -> Redis:
            return fakeredis.FakeAsyncRedis(server=server)

        broker = RedisBroker(prefix=prefix, result_ttl=result_ttl, connect=connect)
        client = connect()
    else:  # pragma: no cover - a typo in a parametrisation
        raise ValueError(f"unknown Redis kind {kind!r}")
    try:
        yield RedisHarness(broker, client, kind)
    finally:
        await broker.close()
        try:
            doomed = [key async for key in client.scan_iter(match=broker.keys.pattern(), count=500)]
            if doomed:
                await client.delete(*doomed)
        finally:
            await client.aclose()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedisServer:
    """A ``redis-server`` of the test's own, on its own port, with no persistence.

    ``start()`` waits until it answers; ``kill()`` sends SIGKILL to its pid; ``stop()`` (call it
    in a ``finally``) kills it if it still runs. Skips the test when no ``redis-server`` is on
    PATH, unless ``CI=true``: then it fails.
    """

    def __init__(self, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not on PATH"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        self.port = free_port()
        self.args = [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.args += ["--bind", "127.0.0.1", *extra]
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    stop = kill
