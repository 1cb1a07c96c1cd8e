"""Misuse of schedule(when, ...): mypy --strict must reject each marked line."""

from __future__ import annotations

from datetime import timedelta

from taskit import App

app = App()


@app.task
async def add(a: int, b: int = 0) -> int:
    return a + b


async def produce() -> None:
    await add.schedule("tomorrow", 1)  # E: arg-type
    await add.schedule(timedelta(seconds=5), "1")  # E: arg-type
    await add.schedule(5)  # E: call-arg
    await add.schedule(5, 1, c=2)  # E: call-arg
    await add.options(queue="q").schedule(5, b="x", a=1)  # E: arg-type


def produce_sync() -> None:
    add.schedule_sync(5, "1")  # E: arg-type
