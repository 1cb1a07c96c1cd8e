"""What workflows cost on Redis: each shape side by side with the plain jobs it is made of.

* a 10-member chord against 11 plain jobs enqueued at once;
* a 1,000-member group against 1,000 plain jobs enqueued in one call;
* a chain of 100 against 100 plain jobs in sequence, each enqueued once the one before it has
  completed (what a caller does without chains: the honest baseline).

Starts its own ``redis-server`` (no persistence) and one ``taskit worker`` process
(``benchmarks.workflow_app``, ``--concurrency`` runners). A scenario's time runs from just before
its first enqueue until the queue's completed total shows all its jobs done (read every
``POLL`` seconds, the same way for a workflow and for its baseline). Each round runs every
pair, workflow and baseline back to back (their order alternating by round); the table gives the
median and, in brackets, the range over ``--runs`` rounds (default 5), after one round not
counted (warm-up). Per-node overhead = (workflow time - baseline time) / nodes, the median of
the rounds' values. Writes ``benchmarks/results/workflows-<date>.md`` and ``.json``, with the
machine and versions.

    .venv/bin/python -m benchmarks.workflows [--runs 5] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
from redis.asyncio import Redis

from benchmarks._machine import machine_line, package_versions
from benchmarks._server import redis_server
from benchmarks.workflow_app import IntTask, make_app
from taskit import App, chain, chord, group

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
QUEUE = "default"
POLL = 0.001


@dataclass
class Bench:
    """The producer's App and tasks, and how many jobs of the queue have completed so far."""

    app: App
    step: IntTask
    total: IntTask
    done: int = 0

    async def completed(self, jobs: int) -> None:
        """Wait until ``jobs`` more jobs have completed than before."""
        self.done += jobs
        # Polled, not awaited on an event: the worker is another process, and both sides of a
        # pair are timed by the same reads.
        while (await self.app.stats([QUEUE]))[QUEUE].completed < self.done:  # noqa: ASYNC110
            await anyio.sleep(POLL)


Scenario = Callable[[Bench], Awaitable[None]]


async def chord_of_10(b: Bench) -> None:
    await chord(group(*(b.step.s(i) for i in range(10))), b.total.step()).enqueue()
    await b.completed(11)


async def plain_11(b: Bench) -> None:
    await b.app.enqueue_many([b.step.prepare(i) for i in range(11)])
    await b.completed(11)


async def group_of_1000(b: Bench) -> None:
    await group(*(b.step.s(i) for i in range(1000))).enqueue()
    await b.completed(1000)


async def plain_1000(b: Bench) -> None:
    await b.app.enqueue_many([b.step.prepare(i) for i in range(1000)])
    await b.completed(1000)


async def chain_of_100(b: Bench) -> None:
    await chain(b.step.s(0), *(b.step.step() for _ in range(99))).enqueue()
    await b.completed(100)


async def plain_100_in_sequence(b: Bench) -> None:
    for i in range(100):
        await b.step.enqueue(i)
        await b.completed(1)


#: (name, nodes, the workflow, its baseline)
PAIRS: list[tuple[str, int, Scenario, Scenario, str]] = [
    ("chord of 10 (+ callback)", 11, chord_of_10, plain_11, "11 plain jobs"),
    ("group of 1,000", 1000, group_of_1000, plain_1000, "1,000 plain jobs"),
    ("chain of 100", 100, chain_of_100, plain_100_in_sequence, "100 plain jobs in sequence"),
]


def start_worker(url: str, concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    """One ``taskit worker`` process; returns once it says it started."""
    env = {**os.environ, "BENCH_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "taskit", "worker", "benchmarks.workflow_app:app",
               "-c", str(concurrency), "--log-level", "info"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while "starting: queues=" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the worker did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc


async def measure(url: str, runs: int) -> dict[str, list[float]]:
    """Seconds per scenario per round (the warm-up round left out)."""
    app, step, total = make_app(url)
    bench = Bench(app, step, total)
    times: dict[str, list[float]] = {}
    try:
        bench.done = (await app.stats([QUEUE]))[QUEUE].completed
        for round_ in range(runs + 1):
            for name, _, workflow, baseline, _ in PAIRS:
                pair = [(name, workflow), (f"{name}: baseline", baseline)]
                for label, scenario in pair if round_ % 2 else pair[::-1]:
                    began = time.perf_counter()
                    await scenario(bench)
                    if round_:
                        times.setdefault(label, []).append(time.perf_counter() - began)
    finally:
        await app.close()
    return times


async def server_version(url: str) -> str:
    client = Redis.from_url(url)
    try:
        return str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()


def ms(values: list[float]) -> str:
    """Median [range], in milliseconds."""
    low, mid, high = (x * 1000 for x in (min(values), statistics.median(values), max(values)))
    return f"{mid:,.1f} [{low:,.1f}-{high:,.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        worker = start_worker(url, args.concurrency, Path(tmp) / "worker.log")
        try:
            times = anyio.run(measure, url, args.runs)
            redis_version = anyio.run(server_version, url)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    rows, overheads = [], {}
    for name, nodes, _, _, baseline_name in PAIRS:
        flow, base = times[name], times[f"{name}: baseline"]
        per_node = [(f - b) / nodes for f, b in zip(flow, base, strict=True)]
        overheads[name] = statistics.median(per_node)
        rows.append((name, ms(flow), baseline_name, ms(base),
                     f"{overheads[name] * 1e6:+,.0f} µs"))  # fmt: skip
    when = datetime.now(UTC)
    versions = {**package_versions(("taskit", "redis", "hiredis", "anyio", "msgspec", "uvloop")),
                "redis-server": redis_version}  # fmt: skip
    lines = [
        f"# Workflows on Redis, {when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"One `taskit worker` process (`--loop auto`: uvloop when installed), concurrency "
        f"{args.concurrency}; the producer in the "
        f"benchmark's process; a scenario ends when the queue's completed total (read every "
        f"{POLL * 1000:g} ms) shows all its jobs done. Median of {args.runs} rounds [range], "
        "milliseconds; per-node overhead: the median of (workflow - baseline) / nodes. The "
        "chain's baseline learns of each completion by those reads before it enqueues the "
        "next job, as a caller without chains would; a chain releases its next step in the "
        "broker, in the step that completes the one before.",
        "",
        "| workflow | ms | baseline | ms | per-node overhead |",
        "|---|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"workflows-{when:%Y-%m-%d}"
    stem.with_suffix(".md").write_text(text)
    data = {
        "date": when.isoformat(), "machine": machine_line(), "versions": versions,
        "args": vars(args), "poll_seconds": POLL, "seconds": times,
        "per_node_overhead_seconds": overheads,
    }  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
