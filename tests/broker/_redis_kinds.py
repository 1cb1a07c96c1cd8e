"""The Redis kinds of the broker conformance suite: a real server and fakeredis (with Lua).

``open_redis_harness(kind, request)`` yields a harness whose broker works under a key prefix of
its own, deleted afterwards. On a real server time cannot be faked, so ``advance`` sleeps.
The real-server kind takes the ``redis_url`` fixture: it fails under ``CI=true`` when no Redis
answers, and skips elsewhere.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis

from taskit.broker.redis import RedisBroker
from tests._ci import missing
from tests.e2e.helpers import RedisServer, free_port

__all__ = ["REDIS_KINDS", "OwnRedisServer", "RedisHarness", "free_port", "open_redis_harness"]

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


class OwnRedisServer(RedisServer):
    """A ``redis-server`` of the test's own, on its own port and in a temporary directory, with
    no persistence (``tests.e2e.helpers.RedisServer``).

    ``start()`` waits until it answers; ``kill()`` sends SIGKILL to its pid and ``start()`` may
    follow (same port); ``stop()`` (call it in a ``finally``) kills it and removes its directory.
    Skips the test when no ``redis-server`` is on PATH, unless ``CI=true``: then it fails.
    """

    def __init__(self, *extra: str) -> None:
        if shutil.which("redis-server") is None:
            missing("redis-server is not on PATH")
        self._dir = tempfile.TemporaryDirectory(prefix="taskit-redis-")
        super().__init__(Path(self._dir.name), None, *extra)

    def stop(self) -> None:
        self.kill()
        self._dir.cleanup()
