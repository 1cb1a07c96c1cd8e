"""Keywords the function does not take: mypy --strict must reject each marked line."""

from __future__ import annotations

from taskit import App

app = App()


@app.task
async def add(a: int, b: int = 0) -> int:
    return a + b


async def produce() -> None:
    await add.enqueue(1, c=3)  # E: call-arg
    await add.options(job_id="x").enqueue(a=1, bee=2)  # E: call-arg
    await add.options(queues="fast").enqueue(1)  # E: call-arg
