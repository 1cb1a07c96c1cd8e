"""Correct use of the typed workflow API: mypy --strict must accept this file as it is."""

from __future__ import annotations

from typing import assert_type

from taskit import App, Call, Chain, Chord, Group, JobResult, Step, Workflow, chain, chord, group

app = App()


@app.task
async def add(a: int, b: int = 0) -> int:
    return a + b


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
async def total(values: list[int]) -> int:
    return sum(values)


@app.task
async def label(n: float, *, prefix: str = "#") -> str:
    return f"{prefix}{n}"


@app.task
async def report(results: list[JobResult]) -> int:
    return sum(r.success for r in results)


async def build() -> None:
    assert_type(add.s(1, 2), Call[int])
    assert_type(mul.step(3), Step[int, int])
    assert_type(label.step(prefix="n="), Step[float, str])
    assert_type(chain(add.s(1, 2), mul.step(3), mul.step(y=4)), Chain[int])
    assert_type(chain(add.s(1, 2), label.step()), Chain[str])  # an int fits a float
    assert_type(add.s(1) | mul.step(2) | mul.step(3), Chain[int])
    assert_type(group(add.s(1, 2), add.s(3)), Group[int])
    assert_type(add.map([(1, 2), (3, 4)], concurrency=2), Group[int])
    assert_type(chord(group(add.s(1, 2), add.s(3)), total.step()), Chord[int])
    assert_type(chord(add.map([(1,)]), report.step(), if_failed="continue"), Chord[int])
    assert_type(add.options(queue="fast").s(1), Call[int])
    wf = await chain(add.s(1, 2), mul.step(3)).enqueue()
    assert_type(wf, Workflow[int])
    assert_type(await wf.result(timeout=5), int)
    assert_type(await chord(group(add.s(1)), total.step()).enqueue(), Workflow[int])
    assert_type(await group(add.s(1)).enqueue(), Workflow[list[int]])
    first = await add.enqueue(1)
    await mul.options(depends_on=[first, "other-id"]).enqueue(1, 2)


def build_sync() -> None:
    wf = chain(add.s(1, 2), mul.step(3)).enqueue_sync()
    assert_type(wf.result_sync(), int)
    assert_type(wf.cancel_sync(), int)
