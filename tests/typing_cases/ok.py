"""Correct use of the typed API: mypy --strict must accept this file as it is."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import assert_type

from taskit import App, Job, JobCreator, JobResult, JobService, WorkerStats

app = App()


@app.task
async def add(a: int, b: int = 0) -> int:
    return a + b


@app.task(name="mail.send", max_retries=5, backoff=2.0, queue="mail", priority=1)
def send(to: str, *, subject: str, cc: list[str] | None = None) -> None:
    pass


def on_failure(job: Job, error: BaseException) -> None:
    pass


@app.task(backoff=lambda attempt: 2.0 * attempt, timeout=3.0, on_failure=on_failure)
async def fetch(url: str) -> bytes:
    return url.encode()


@app.task(validate=False)
def loose(data: dict[str, object]) -> None:
    pass


async def produce() -> None:
    assert_type(await add.enqueue(1), Job)
    await add.enqueue(1, 2)
    await add.enqueue(a=1, b=2)
    await send.enqueue("ada@example.com", subject="hi")
    await send.enqueue("ada@example.com", subject="hi", cc=["bob@example.com"])
    assert_type(await add.schedule(10, 1), Job)
    await add.schedule(2.5, 1, b=2)
    await add.schedule(timedelta(minutes=5), 1)
    await add.schedule(datetime.now(UTC) + timedelta(hours=1), 1)
    variant = add.options(queue="fast", priority=5, job_id="x", max_retries=1, timeout=2.0)
    await variant.enqueue(3)
    await send.options(metadata={"k": 1}, created_by="me").schedule(5, "x", subject="s")
    jobs = await app.enqueue_many([add.prepare(1), send.prepare("x", subject="y")])
    assert_type(jobs, list[Job])
    job = await app.enqueue("mail.send", "x", subject="y")
    job = await app.remote("elsewhere.task").enqueue(1, "anything", flag=True)
    assert_type(await app.result(job.id, timeout=5.0), JobResult)
    await fetch.enqueue("https://example.com")
    await loose.enqueue({"k": 1})
    await add.options(validate=False).enqueue(1)
    await app.remote("elsewhere.task", backoff=2.0, validate=False, priority=None).enqueue(1)
    await add.options(created_by=uuid.uuid4(), priority=None).enqueue(1)


def produce_sync() -> Job:
    send.schedule_sync(5, "x", subject="y")
    return add.enqueue_sync(1, b=2)


async def consume() -> WorkerStats:
    async with app.worker(concurrency=2) as worker:
        print(worker.stats)
    return await app.worker(queues=["default", "mail"], concurrency=4).run(burst=True)


async def call_directly() -> None:
    assert_type(await add(1, 2), int)
    assert_type(send("ada@example.com", subject="hi"), None)
    assert_type(await fetch("u"), bytes)


def declined(exc: ValueError) -> JobResult:
    result = JobResult(success=False, error=exc)  # an exception is taken as the error
    assert_type(result.error, str | None)  # and read back as text
    return result


async def through_the_port() -> Job:
    jobs: JobCreator = JobService(app)  # JobService satisfies the port's signature
    await jobs.create_job("email.send", {"to": "ada"}, "emails", 5)
    assert_type(await JobService(app).process_one("emails"), JobResult | None)
    return await jobs.create_job("email.send", {"to": "ada"}, queue_name="emails", priority=5)
