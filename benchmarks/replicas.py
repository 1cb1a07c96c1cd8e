"""What ``?replicas=N`` costs the producer: enqueues on a Sentinel set with and without it.

Starts a Sentinel set of its own (tests/topology: a master, ``--replicas`` (2) replicas, 3
sentinels, ``min-replicas-to-write`` = replicas, as docs/deployment.md advises) and times, with
the plain Sentinel URL and with ``?replicas=<replicas>`` (each acknowledged write followed by
``WAIT``), ``--jobs`` (3,000) enqueues of a no-op job by the public API:

* **enqueue (async), one at a time**: ``await task.enqueue()`` in a loop;
* **enqueue (async), 16 at once**: 16 producers sharing the App's one command connection;
* **enqueue_sync**: ``task.enqueue_sync()`` from one thread (the blocking client).

Each figure is the median (range in brackets) of ``--runs`` (5) runs, the two URLs interleaved.
Writes ``benchmarks/results/replicas-<date>.md`` and ``.json``; docs/deployment.md quotes it.

    .venv/bin/python -m benchmarks.replicas [--runs 5] [--jobs 3000] [--replicas 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from benchmarks._machine import machine_line, package_versions
from taskit import App, Task
from tests.topology import SentinelSet

RESULTS = Path(__file__).parent / "results"
WARMUP = 200
CONCURRENT = 16


def _noop_app(url: str) -> tuple[App, Task[..., Any]]:
    app = App(url)

    @app.task(name="noop")
    async def noop() -> None: ...

    return app, noop


async def _async(url: str, jobs: int, producers: int) -> float:
    app, noop = _noop_app(url)
    try:
        for _ in range(WARMUP):
            await noop.enqueue()

        async def produce(count: int) -> None:
            for _ in range(count):
                await noop.enqueue()

        began = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(producers):
                group.start_soon(produce, jobs // producers)
        return (jobs // producers * producers) / (time.perf_counter() - began)
    finally:
        await app.close()


def one_at_a_time(url: str, jobs: int) -> float:
    return anyio.run(_async, url, jobs, 1)


def concurrent(url: str, jobs: int) -> float:
    return anyio.run(_async, url, jobs, CONCURRENT)


def sync_one_thread(url: str, jobs: int) -> float:
    app, noop = _noop_app(url)
    try:
        for _ in range(WARMUP):
            noop.enqueue_sync()
        began = time.perf_counter()
        for _ in range(jobs):
            noop.enqueue_sync()
        return jobs / (time.perf_counter() - began)
    finally:
        app.close_sync()


SCENARIOS: dict[str, Callable[[str, int], float]] = {
    "enqueue (async), one at a time": one_at_a_time,
    f"enqueue (async), {CONCURRENT} at once": concurrent,
    "enqueue_sync, one thread": sync_one_thread,
}


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--replicas", type=int, default=2)
    opts = parser.parse_args()
    kinds = ("without", "with ?replicas")
    rates: dict[str, dict[str, list[float]]] = {s: {k: [] for k in kinds} for s in SCENARIOS}
    with SentinelSet(replicas=opts.replicas, min_replicas_to_write=opts.replicas) as sentinels:
        base = sentinels.url(prefix="bench-replicas")
        urls = {"without": base, "with ?replicas": f"{base}&replicas={opts.replicas}"}
        for _ in range(opts.runs):  # interleaved: a busy moment on the machine hits both
            for scenario, measure in SCENARIOS.items():
                for kind in kinds:
                    rate = measure(urls[kind], opts.jobs)
                    rates[scenario][kind].append(rate)
                    print(f"{scenario:32} {kind:15} {rate:8,.0f}/s", flush=True)
    when = datetime.now(UTC)
    versions = package_versions(("taskit", "redis", "hiredis"))
    lines = [
        f"# Enqueues that wait for replicas ({when:%Y-%m-%d})",
        "",
        f"`python -m benchmarks.replicas --runs {opts.runs} --jobs {opts.jobs} --replicas "
        f"{opts.replicas}`: a no-op job enqueued {opts.jobs:,} times per run on a Sentinel set "
        f"of its own on loopback (a master, {opts.replicas} replicas, min-replicas-to-write "
        f"{opts.replicas}), through the Sentinel URL without and with `?replicas="
        f"{opts.replicas}`; enqueues/s, median [range] of {opts.runs} runs, interleaved.",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "| path | without | with `?replicas` | with / without |",
        "|---|---|---|---|",
    ]
    ratios: dict[str, float] = {}
    for scenario, by_kind in rates.items():
        ratio = statistics.median(by_kind["with ?replicas"]) / statistics.median(by_kind["without"])
        ratios[scenario] = ratio
        lines.append(
            f"| {scenario} | {_median(by_kind['without'])} | "
            f"{_median(by_kind['with ?replicas'])} | {ratio:.2f} |"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"replicas-{when:%Y-%m-%d}"
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    record = {"runs": opts.runs, "jobs": opts.jobs, "replicas": opts.replicas,
              "rates": rates, "ratios": ratios}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}.md and .json")


if __name__ == "__main__":
    main()
