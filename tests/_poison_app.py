"""An App on the real Redis with a short lease and an ``add`` task, under a key prefix of its
own that is deleted afterwards: the poison tests damage its keys by hand."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio

from taskit import App, Settings
from taskit.broker.redis import RedisBroker

__all__ = ["poison_app"]


@asynccontextmanager
async def poison_app(redis_url: str, stem: str) -> AsyncIterator[App]:
    broker = RedisBroker(redis_url, prefix=f"{stem}-{uuid.uuid4().hex[:10]}")
    made = App(broker, settings=Settings(visibility_timeout=0.5, reaper_interval=0.1))

    @made.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    try:
        yield made
    finally:
        client = redis.asyncio.Redis.from_url(redis_url)
        doomed = [key async for key in client.scan_iter(match=broker.keys.pattern(), count=500)]
        if doomed:
            await client.delete(*doomed)
        await client.aclose()
        await made.broker.close()
