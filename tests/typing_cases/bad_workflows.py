"""Misuse of the workflow API: mypy --strict must reject each marked line."""

from __future__ import annotations

from taskit import App, chain, chord, group

app = App()


@app.task
async def add(a: int, b: int = 0) -> int:
    return a + b


@app.task
async def shout(text: str) -> str:
    return text.upper()


@app.task
async def total(values: list[int]) -> int:
    return sum(values)


@app.task
async def nothing() -> int:
    return 0


def build() -> None:
    add.s("1")  # E: arg-type
    add.s(1, 2, 3)  # E: call-arg
    add.step(b="2")  # E: arg-type
    add.step(1, 2)  # E: call-arg
    nothing.step()  # E: arg-type
    chain(add.s(1), shout.step())  # E: misc
    add.s(1) | shout.step()  # E: operator
    chord(group(add.s(1)), add.step())  # E: arg-type
    chord(group(add.s(1)), total.step(), if_failed="continue")  # E: call-overload
    chain(add.s(1), add.step(), if_failed="sometimes")  # E: call-overload
    wrong: str = chain(add.s(1), add.step()).enqueue_sync().result_sync()  # E: assignment
    print(wrong)
