"""Measure what the argument type check costs at enqueue: ``task.prepare(...)`` (everything a
producer does before the broker call) with the check on and with ``validate=False``, side by
side, for a few argument shapes (pure client CPU, no broker); then whole single enqueues
(``await task.enqueue(...)``, one at a time) against a ``redis-server`` of its own, on and off,
for the cheapest and a costly shape.

Each figure is the median over ``--runs`` runs of the mean time per call; on and off take
turns going first, so drift on a shared machine hits both. Prints a Markdown table and writes
it, with the date and machine, to ``benchmarks/results/validation-<date>.md``.

    .venv/bin/python -m benchmarks.validation [--runs 9] [--calls 20000] [--jobs 2000]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import msgspec

from benchmarks._machine import machine_line
from benchmarks._server import redis_server
from taskit import App, MemoryBroker
from taskit.broker.redis import RedisBroker

RESULTS = Path(__file__).parent / "results"

app = App(MemoryBroker())


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def send(to: str, *, subject: str, cc: list[str] | None = None) -> None:
    pass


@app.task
def report(ids: set[int], span: tuple[datetime, datetime], total: Decimal) -> None:
    pass


@app.task
def ingest(record: dict[str, Any]) -> None:
    pass


_START = datetime(2026, 1, 1, tzinfo=UTC)
#: (label, task, args, kwargs): from the common call to the heavier shapes.
SHAPES: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = [
    ("prepare add(1, 2): two ints, positional", add, (1, 2), {}),
    ("prepare send(to, subject=..., cc=[2 str])", send, ("a@example.com",),
     {"subject": "hi", "cc": ["b@example.com", "c@example.com"]}),
    ("prepare report(set of 10 ints, tuple of 2 datetimes, Decimal)", report,
     (set(range(10)), (_START, _START), Decimal("12.50")), {}),
    ("prepare ingest(dict of 20 str/int/float/list values)", ingest,
     ({f"k{i}": [i, "x", 1.5][i % 3] if i % 4 else [i, i] for i in range(20)},), {}),
]  # fmt: skip


def per_call(prepare: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             calls: int) -> float:  # fmt: skip
    """Mean seconds per ``prepare(*args, **kwargs)`` over ``calls`` calls."""
    started = time.perf_counter()
    for _ in range(calls):
        prepare(*args, **kwargs)
    return (time.perf_counter() - started) / calls


def measure(runs: int, calls: int) -> list[tuple[str, float, float]]:
    """(shape, µs with the check, µs without) per shape, medians of ``runs`` runs."""
    rows = []
    for label, task, args, kwargs in SHAPES:
        on, off = task.prepare, task.options(validate=False).prepare
        on(*args, **kwargs)  # compiles the check, warms caches
        off(*args, **kwargs)
        with_check: list[float] = []
        without: list[float] = []
        for run in range(runs):
            order = [(on, with_check), (off, without)]
            for prepare, out in order if run % 2 else order[::-1]:  # neither always first
                out.append(per_call(prepare, args, kwargs, calls))
        rows.append((label, statistics.median(with_check) * 1e6, statistics.median(without) * 1e6))
    return rows


async def enqueue_rate(url: str, runs: int, jobs: int) -> list[tuple[str, float, float]]:
    """(shape, µs per single enqueue with the check, without) against Redis at ``url``."""
    rows = []
    broker = RedisBroker(url, prefix="bench-validation")
    saved, app.broker = app.broker, broker
    try:
        for label, task, args, kwargs in (SHAPES[0], SHAPES[2]):
            on, off = task.enqueue, task.options(validate=False).enqueue
            await on(*args, **kwargs)  # connects, loads the scripts
            timings: tuple[list[float], list[float]] = ([], [])
            for run in range(runs):
                order = [(on, timings[0]), (off, timings[1])]
                for enqueue, out in order if run % 2 else order[::-1]:  # neither always first
                    started = time.perf_counter()
                    for _ in range(jobs):
                        await enqueue(*args, **kwargs)
                    out.append((time.perf_counter() - started) / jobs)
                await broker.purge(task.opts.queue)
            with_check, without = (statistics.median(t) * 1e6 for t in timings)
            rows.append((label.replace("prepare", "enqueue", 1), with_check, without))
    finally:
        app.broker = saved
        await broker.close()
    return rows


def main(runs: int, calls: int, jobs: int) -> str:
    rows = measure(runs, calls)
    with redis_server() as url:
        rows += anyio.run(enqueue_rate, url, runs, jobs)
    today = datetime.now(UTC).date().isoformat()
    lines = [
        f"# Argument type check at enqueue, {today}",
        "",
        f"{machine_line()} Python {platform.python_version()}; msgspec {msgspec.__version__}.",
        f"`task.prepare(...)`, median of {runs} runs of {calls:,} calls each "
        "(`python -m benchmarks.validation`).",
        "",
        f"Single enqueues: {jobs:,} per run, awaited one at a time, own redis-server.",
        "",
        "| call | checked (µs) | `validate=False` (µs) | ratio |",
        "|---|---|---|---|",
    ]
    lines += [f"| {label} | {on:.2f} | {off:.2f} | {on / off:.3f} |" for label, on, off in rows]
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"validation-{today}.md").write_text(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=2_000)
    options = parser.parse_args()
    print(main(options.runs, options.calls, options.jobs))
