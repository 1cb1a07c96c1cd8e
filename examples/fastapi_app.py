"""FastAPI: enqueue from a request handler; the workers run inside the app's lifespan.

    pip install 'taskit[examples]'
    uvicorn examples.fastapi_app:api                       # memory broker: one process
    TASKIT_BROKER_URL=redis://localhost:6379/0 uvicorn examples.fastapi_app:api

With Redis, the same jobs can also be run by separate `taskit worker examples.fastapi_app:tasks`
processes; the in-process workers are then optional.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from taskit import App, JobService, WorkerManager

tasks = App()  # TASKIT_BROKER_URL, else the in-process memory:// broker
jobs = JobService(tasks)
welcomed: list[str] = []


@tasks.task(name="emails.welcome", max_retries=3, timeout=30)
async def send_welcome(email: str) -> str:
    welcomed.append(email)  # stands in for an email provider's API
    return f"welcome mail sent to {email}"


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    # Two workers, four jobs each at a time; leaving the block lets in-flight jobs finish.
    async with WorkerManager(tasks, workers=2, queues=["default"], concurrency=4):
        yield
    await tasks.close()


api = FastAPI(lifespan=lifespan)


class Signup(BaseModel):
    email: str


@api.post("/signup", status_code=202)
async def signup(body: Signup) -> dict[str, str]:
    job = await send_welcome.enqueue(body.email)  # returns as soon as the job is stored
    return {"job_id": job.id}


@api.get("/jobs/{job_id}")
async def job_status(job_id: str) -> dict[str, Any]:
    job = await jobs.get_job(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail="no such job")
    result = job.result
    return {
        "status": job.status.value,
        "attempts": job.attempts,
        "value": result.value if result is not None else None,
    }


@api.get("/jobs")
async def job_stats() -> dict[str, int]:
    stats = await jobs.get_job_stats()
    return {
        "queued": stats.queued,
        "processing": stats.processing,
        "completed": stats.completed,
        "failed": stats.failed,
    }
