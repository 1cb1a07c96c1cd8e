"""A script that works through a queue with a handler of its own, and keeps each job's record
only as long as someone needs it.

``process_one(queue, handler)`` runs one job by ``handler(job)``, which dispatches on the task
name: this script registers no task at all (other services enqueue by name). What the handler
returns is the job's result; what it raises is retried as a worker would, then dead-lettered.
A ``taskit worker`` would not run these jobs: it runs registered tasks only.

``result_ttl`` says how long a finished job stays readable: the report's a week, the ping's not
at all (0), the others the broker's default (``TASKIT_RESULT_TTL``, ten minutes). Dead letters are
kept until requeued or purged.

    python examples/process_one.py
    python examples/process_one.py "redis://127.0.0.1:6379/0?prefix=process-one-demo"
"""

from __future__ import annotations

import sys
from datetime import timedelta

import anyio

from taskit import App, Job, JobService, Settings

app = App(sys.argv[1] if len(sys.argv) > 1 else "memory://", settings=Settings(backoff=0.0))


async def my_handler(job: Job) -> str:
    """One job of any task name: its payload is ``job.kwargs`` (``job.args`` by position)."""
    if job.task == "report.build":
        return f"built the report for {job.kwargs['month']}"
    if job.task == "email.send":
        return f"sent to {job.kwargs['to']}"
    if job.task == "ping":
        return "pong"
    raise LookupError(f"this script cannot run {job.task!r}")  # retried, then dead-lettered


async def main() -> None:
    jobs = [
        await app.remote("report.build", result_ttl=timedelta(days=7)).enqueue(month="2026-11"),
        await app.remote("email.send").enqueue(to="ada@example.com"),
        await app.remote("ping", result_ttl=0).enqueue(),
        await app.remote("legacy.job", max_retries=1).enqueue(),
    ]
    service = JobService(app)
    while (result := await service.process_one("default", my_handler)) is not None:
        print(f"ran: {result.value if result.success else f'{result.error_type}: {result.error}'}")
    for job in jobs:
        now = await app.get_job(job.id)
        kept = "the broker's" if job.result_ttl is None else f"{job.result_ttl:g} s"
        print(f"{job.task}: {'gone' if now is None else now.status.value} (result_ttl: {kept})")
    await app.close()


if __name__ == "__main__":
    anyio.run(main)
