"""The tasks of ``benchmarks/workflows.py``; its worker runs
``taskit worker benchmarks.workflow_app:app`` (Redis at ``BENCH_REDIS_URL``)."""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any

from taskit import App, Task

#: A task whose handler is ``async def (...) -> int``.
IntTask = Task[..., Coroutine[Any, Any, int]]


def make_app(url: str) -> tuple[App, IntTask, IntTask]:
    """An App on ``url`` and its two tasks: ``step`` (n + 1: a chain's step, a group's member,
    a plain job) and ``total`` (a chord's callback: the sum of its members' results)."""
    app = App(url)

    @app.task(name="bench.step")
    async def step(n: int) -> int:
        return n + 1

    @app.task(name="bench.total")
    async def total(results: list[int]) -> int:
        return sum(results)

    return app, step, total


app, _step, _total = make_app(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
