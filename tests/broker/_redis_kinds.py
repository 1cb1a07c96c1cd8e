"""The Redis kinds of the broker conformance suite: each names the transport it covers and the
server behind it.

* ``fast-real``: the fast transport (what every ``RedisBroker`` uses) to a real server.
* ``redispy-real``: the redis-py transport (``transport.redispy.to_url``) to a real server, so
  the two transports are held to the same suite.
* ``redispy-fakeredis``: the redis-py transport to fakeredis (with Lua), in process.
* ``fast-own``: the fast transport to a redis-server of the test's own (``OwnRedisServer``),
  for tests that change or count what is the whole server's (``SCRIPT FLUSH``, blocked clients
  in ``INFO``): on the shared server they would disturb, or see, the tests that run beside them
  (pytest-xdist's other worker, another checkout's run). Not in the conformance suite.
* ``fast-cluster``: the fast transport to the session's Redis Cluster (``redis_cluster``,
  tests/topology) through a ``redis+cluster://`` URL of every node: the suite on a cluster. Only
  with ``TASKIT_TEST_CLUSTER=1`` (``.ci/run``'s cluster profile), so the default suite keeps its
  time; the cluster's own tests (test_redis_cluster.py) always run.

``open_redis_harness(kind, request)`` yields a harness whose broker works under a key prefix of
its own, deleted afterwards. On a real server time cannot be faked, so ``advance`` sleeps.
The real-server kinds take the ``redis_url`` fixture: they fail under ``CI=true`` when no Redis
answers, and skip elsewhere.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from taskit.broker.redis import RedisBroker
from taskit.broker.redis.transport import Arg
from taskit.broker.redis.transport.redispy import over, to_url
from tests._ci import missing
from tests.e2e.helpers import RedisServer, free_port

__all__ = [
    "CLUSTER",
    "OWN",
    "REAL",
    "REDIS_KINDS",
    "SHORT_KINDS",
    "Direct",
    "OwnRedisServer",
    "RedisHarness",
    "free_port",
    "open_redis_harness",
]

#: The kind on a real server through the transport every broker uses.
REAL = "fast-real"
#: The kinds a Redis broker's own tests run on: the production transport, and fakeredis.
SHORT_KINDS = [REAL, "redispy-fakeredis"]
# (kind, anyio backend) pairs of the conformance suite: the transports are asyncio protocols.
REDIS_KINDS: list[tuple[str, str]] = [
    (REAL, "asyncio"),
    ("redispy-real", "asyncio"),
    ("redispy-fakeredis", "asyncio"),
]
#: The fast transport to a server of the test's own (module docstring).
OWN = "fast-own"
#: The suite on a Redis Cluster too, when asked (module docstring).
CLUSTER = "fast-cluster"
if os.environ.get("TASKIT_TEST_CLUSTER") == "1":
    REDIS_KINDS.append((CLUSTER, "asyncio"))


class Direct:
    """A redis-py client as a ``Transport`` that leaves it as it is (its reply conversions on),
    for calling a script directly from a test."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def execute(self, *args: Arg, wait: float = 0.0) -> Any:
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    def drop(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


@dataclass
class RedisHarness:
    broker: RedisBroker
    #: A separate client on the same data, for tests that look at or tamper with keys.
    client: Redis
    kind: str

    @property
    def direct(self) -> Direct:
        """``client`` as a transport, for ``Scripts.call``."""
        return Direct(self.client)

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the server's clock (a real sleep)."""
        await anyio.sleep(seconds)


@asynccontextmanager
async def open_redis_harness(
    kind: str, request: pytest.FixtureRequest, *, result_ttl: float | None = 60.0
) -> AsyncIterator[RedisHarness]:
    """A harness on ``kind`` (see the module docstring) under a fresh key prefix."""
    prefix = f"taskit-test-{uuid.uuid4().hex[:12]}"
    if kind == OWN:
        server = OwnRedisServer()
        server.start()
        try:
            broker = RedisBroker(server.url, prefix=prefix, result_ttl=result_ttl)
            client = Redis.from_url(server.url)
            try:
                yield RedisHarness(broker, client, kind)
            finally:
                await broker.close()
                await client.aclose()
        finally:
            server.stop()
        return
    if kind in (REAL, "redispy-real"):
        url = request.getfixturevalue("redis_url")
        connect = None if kind == REAL else to_url(url)
        broker = RedisBroker(url, prefix=prefix, result_ttl=result_ttl, connect=connect)
        client = Redis.from_url(url)
    elif kind == CLUSTER:
        cluster = request.getfixturevalue("redis_cluster")
        broker = RedisBroker(cluster.url(), prefix=prefix, result_ttl=result_ttl)
        owner = cluster.owner_of("{" + prefix + "}")  # every key of the prefix lives there
        client = Redis(host=owner.host, port=owner.port)
    elif kind == "redispy-fakeredis":
        import fakeredis

        server = fakeredis.FakeServer()

        def fake() -> Redis:
            return fakeredis.FakeAsyncRedis(server=server)

        broker = RedisBroker(prefix=prefix, result_ttl=result_ttl, connect=over(fake))
        client = fake()
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
