"""taskit in one file: define tasks, enqueue jobs, run a worker until the queue is empty.

Runs on the in-process memory broker, so it needs no server:

    python examples/quickstart.py
"""

from __future__ import annotations

from datetime import timedelta

import anyio

from taskit import App, JobResult, Retry

app = App("memory://")

attempts: dict[str, int] = {}


@app.task(name="add")
async def add(a: int, b: int) -> int:
    return a + b


@app.task(name="resize", max_retries=2)
def resize(path: str, width: int) -> str:
    """A plain function: it runs in a worker thread."""
    return f"{path} resized to {width}px"


@app.task(name="charge", max_retries=3)
async def charge(order: str) -> str:
    """Fails twice, then succeeds: each retry is a new attempt."""
    attempts[order] = attempts.get(order, 0) + 1
    if attempts[order] < 3:
        raise Retry(delay=0.05, reason="payment gateway busy")
    return f"{order} charged on attempt {attempts[order]}"


@app.task(name="validate")
async def validate(email: str) -> JobResult:
    """An expected failure: returned, not raised, so it is not retried."""
    if "@" not in email:
        return JobResult(success=False, error=f"{email!r} is not an email address")
    return JobResult(success=True, value=email)


async def main() -> None:
    jobs = [
        await add.enqueue(2, 3),
        await resize.enqueue("cat.png", width=640),
        await charge.enqueue("order-17"),
        await validate.enqueue("not-an-email"),
        await add.schedule(timedelta(seconds=0.2), 40, 2),
    ]
    stats = await app.worker(concurrency=4).run(burst=True)
    for job in jobs:
        result = await app.result(job.id, timeout=5)
        final = await app.get_job(job.id)
        assert final is not None
        shown = result.value if result.success else f"error: {result.error}"
        print(f"{job.task:<9} {final.status.value:<10} attempts={final.attempts}  {shown}")
    print(f"worker: {stats}")


if __name__ == "__main__":
    anyio.run(main)
