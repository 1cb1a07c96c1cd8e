"""taskiq under FastAPI: ``broker.startup()`` in the lifespan, ``await task.kiq()``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from benchmarks.peers.taskiq_app import broker
from benchmarks.peers.webapps import counted

ran = broker.get_all_tasks()["ran"]


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await broker.startup()
    yield
    await broker.shutdown()


api = FastAPI(lifespan=lifespan)


@api.post("/jobs", status_code=202)
async def create() -> dict[str, str]:
    task = await ran.kiq()
    counted()
    return {"id": task.task_id}
