"""Arguments of the wrong type: mypy --strict must reject each marked line."""

from __future__ import annotations

from taskit import App

app = App()


@app.task
async def add(a: int, b: int = 0) -> int:
    return a + b


@app.task(queue="mail", max_retries=2)
def send(to: str, *, subject: str) -> None:
    pass


async def produce() -> None:
    await add.enqueue("1")  # E: arg-type
    await add.enqueue(1, b="2")  # E: arg-type
    await send.enqueue(42, subject="hi")  # E: arg-type
    await add.options(queue="fast").enqueue(1.5)  # E: arg-type
    add.prepare([1])  # E: arg-type


def produce_sync() -> None:
    add.enqueue_sync("1")  # E: arg-type
