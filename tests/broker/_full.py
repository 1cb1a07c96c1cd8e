"""A Redis out of memory, for tests: a server of the test's own with a small ``maxmemory`` and
``maxmemory-policy noeviction`` (``small_redis``), filled with ballast until it refuses writes
(``fill``) and emptied again (``empty``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions
from redis.asyncio import Redis

from tests.broker._redis_kinds import OwnRedisServer

__all__ = ["MAXMEMORY", "empty", "fill", "small_redis"]

MAXMEMORY = "8mb"

# A script that has written may grow memory past maxmemory (it cannot stop halfway): the one
# way to put Redis firmly over it, so that freed client buffers do not bring it back under.
_OVERSHOOT = "redis.call('DEL', KEYS[1]) redis.call('SET', KEYS[1], string.rep('x', ARGV[1]))"


@contextmanager
def small_redis() -> Iterator[OwnRedisServer]:
    """A started redis-server with ``MAXMEMORY`` and ``noeviction``, stopped afterwards."""
    made = OwnRedisServer("--maxmemory", MAXMEMORY, "--maxmemory-policy", "noeviction")
    try:
        made.start()
        yield made
    finally:
        made.stop()


async def fill(url: str) -> None:
    """Store ballast until Redis refuses a write, then 1 MB more: it is out of memory from then
    on, whatever the test does, until ``empty``."""
    client = Redis.from_url(url)
    try:
        for n in range(10_000):
            try:
                await client.set(f"ballast:{n}", b"x" * 65536)
            except redis.exceptions.OutOfMemoryError:
                break
        else:  # pragma: no cover
            raise AssertionError("Redis never ran out of memory")
        await client.eval(_OVERSHOOT, 1, "ballast:over", 1 << 20)
        try:
            await client.set("ballast:probe", b"x")
        except redis.exceptions.OutOfMemoryError:
            return
        raise AssertionError("Redis took a write after it was filled")  # pragma: no cover
    finally:
        await client.aclose()


async def empty(url: str) -> None:
    """Drop the ballast: Redis has memory again."""
    client = Redis.from_url(url)
    try:
        doomed = [key async for key in client.scan_iter(match="ballast:*", count=1000)]
        await client.delete(*doomed)
    finally:
        await client.aclose()
