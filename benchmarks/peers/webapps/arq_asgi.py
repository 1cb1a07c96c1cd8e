"""arq under FastAPI: a pool made in the lifespan, ``await redis.enqueue_job(name)`` per request."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from fastapi import FastAPI, Request

from benchmarks.peers.webapps import counted


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    url = os.environ["BENCH_REDIS_URL"]
    api.state.redis = await create_pool(RedisSettings.from_dsn(url))
    yield
    await api.state.redis.aclose()


api = FastAPI(lifespan=lifespan)


@api.post("/jobs", status_code=202)
async def create(request: Request) -> dict[str, str]:
    redis: ArqRedis = request.app.state.redis
    job = await redis.enqueue_job("ran")
    assert job is not None
    counted()
    return {"id": job.job_id}
