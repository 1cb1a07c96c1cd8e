"""taskit under FastAPI: a producer-only lifespan (no in-process workers: ``uvicorn --workers N``
runs N producers, the worker runs apart); ``await task.enqueue()`` per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from benchmarks.peers.taskit_app import app as tasks
from benchmarks.peers.webapps import counted

ran = tasks.get_task("ran")


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await tasks.close()


api = FastAPI(lifespan=lifespan)


@api.post("/jobs", status_code=202)
async def create() -> dict[str, str]:
    job = await ran.enqueue()
    counted()
    return {"id": job.id}
