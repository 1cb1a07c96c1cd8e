"""FastAPI: enqueue from a request handler; a producer-only lifespan in production.

    pip install 'taskit[examples]'
    uvicorn examples.fastapi_app:api                       # memory broker: one process

    export TASKIT_BROKER_URL=redis://localhost:6379/0      # production: a shared broker
    uvicorn examples.fastapi_app:api --workers 4           # 4 web processes, producers only
    taskit worker examples.fastapi_app:tasks               # the workers, as many as you need

On a shared broker (Redis, SQLite) the lifespan starts no worker: under `uvicorn --workers N`
each web process would start its own, N times the workers you meant, competing with the web tier
for its CPU. `taskit worker` processes run the jobs, scaled apart from the web processes. Only on
the memory broker, whose jobs no other process can see, does the app run workers itself.
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


def runs_workers_in_process() -> bool:
    """Only on the memory broker: its jobs live in this process, so no `taskit worker` sees them."""
    return tasks.broker_url.startswith("memory:")


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    if runs_workers_in_process():
        # Two workers, four jobs each at a time; leaving the block lets in-flight jobs finish.
        async with WorkerManager(tasks, workers=2, queues=["default"], concurrency=4):
            yield
    else:
        yield  # producer only: enqueues connect on first use; `taskit worker` runs the jobs
    await tasks.close()  # each web process closes its connections as it stops


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
