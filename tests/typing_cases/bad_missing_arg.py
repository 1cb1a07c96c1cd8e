"""Missing or surplus arguments: mypy --strict must reject each marked line."""

from __future__ import annotations

from taskit import App

app = App()


@app.task
async def add(a: int, b: int = 0) -> int:
    return a + b


@app.task(name="mail.send")
def send(to: str, *, subject: str) -> None:
    pass


async def produce() -> None:
    await add.enqueue()  # E: call-arg
    await send.enqueue("ada@example.com")  # E: call-arg
    await add.enqueue(1, 2, 3)  # E: call-arg
    await send.options(priority=1).enqueue(subject="hi")  # E: call-arg
