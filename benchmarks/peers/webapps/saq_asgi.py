"""SAQ under FastAPI: the queue connected in the lifespan, ``await queue.enqueue(name)``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from benchmarks.peers.saq_app import make_queue
from benchmarks.peers.webapps import counted

queue = make_queue(os.environ["BENCH_REDIS_URL"])


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await queue.connect()
    yield
    await queue.disconnect()


api = FastAPI(lifespan=lifespan)


@api.post("/jobs", status_code=202)
async def create() -> dict[str, str]:
    job = await queue.enqueue("ran")
    assert job is not None
    counted()
    return {"id": job.key}
