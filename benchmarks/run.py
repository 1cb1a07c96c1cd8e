"""Benchmark taskit against its peers on a private Redis, side by side.

    benchmarks/.venv/bin/python -m benchmarks.run --quick          # small sizes, one run
    benchmarks/.venv/bin/python -m benchmarks.run                  # full sizes, median of 3
    benchmarks/.venv/bin/python -m benchmarks.run --only taskit --only saq --runs 5

Writes ``benchmarks/results/bench-<date>[-quick].md`` (the table, also printed), a ``.json`` of
every figure of every run, and a ``.png`` of drain rate against queue depth (with matplotlib).
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

from redis.asyncio import Redis

from benchmarks import report
from benchmarks._server import redis_server
from benchmarks.peers import SYSTEMS, System, load
from benchmarks.scenarios import SCENARIOS, Bench, Sizes

__all__ = ["FULL", "QUICK", "main"]

QUICK = Sizes(
    enqueue=2_000, batch=20_000, drain=3_000, latency=200,
    depths=(1_000, 100_000), delayed=100_000, procs=(1, 2, 4),
)  # fmt: skip
FULL = Sizes(
    enqueue=10_000, batch=200_000, drain=20_000, latency=1_000,
    depths=(1_000, 100_000, 1_000_000), delayed=100_000, procs=(1, 2, 4),
)  # fmt: skip

Runs = dict[str, list[dict[str, float]]]
#: Scenarios whose jobs are counted in the one worker process (``benchmarks.probe``).
IN_PROCESS = ("drain", "drain_sync", "depth", "delayed", "procs")


async def one_run(
    systems: dict[str, type[System]], url: str, sizes: Sizes, only: list[str], errors: list[str]
) -> dict[str, dict[str, float]]:
    """Every scenario for every system, systems interleaved so they share the same noise."""
    client = Redis.from_url(url)
    figures: dict[str, dict[str, float]] = {name: {} for name in systems}
    try:
        for scenario, measure in SCENARIOS.items():
            if only and scenario not in only:
                continue
            for name, cls in systems.items():
                if not cls.one_process and scenario in IN_PROCESS:
                    continue  # its jobs run in several processes: benchmarks/peers_drain.py
                began = time.perf_counter()
                try:
                    figures[name] |= await measure(Bench(cls, url, client, sizes))
                except Exception as exc:
                    if type(exc).__name__ != "NotSupported":
                        errors.append(f"{name} {scenario}: {type(exc).__name__}: {exc}")
                        traceback.print_exc()
                    continue
                print(f"  {name:7} {scenario:13} {time.perf_counter() - began:6.1f} s", flush=True)
    finally:
        await client.aclose()
    return figures


def medians(runs: Runs) -> dict[str, dict[str, float]]:
    """Per system and figure, the median over the runs that produced it."""
    out: dict[str, dict[str, float]] = {}
    for name, per_run in runs.items():
        keys = {k for fig in per_run for k in fig}
        out[name] = {k: statistics.median(f[k] for f in per_run if k in f) for k in keys}
    return out


def ratios(runs: Runs) -> dict[str, dict[str, float]]:
    """taskit / peer for each figure, computed within each run, then the median over runs."""
    out: dict[str, dict[str, float]] = {}
    for peer, per_run in runs.items():
        if peer == "taskit" or "taskit" not in runs:
            continue
        pairs: dict[str, list[float]] = {}
        for ours, theirs in zip(runs["taskit"], per_run, strict=True):
            for key in ours.keys() & theirs.keys():
                if theirs[key]:
                    pairs.setdefault(key, []).append(ours[key] / theirs[key])
        out[peer] = {k: statistics.median(v) for k, v in pairs.items()}
    return out


async def main(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    names = args.system or list(SYSTEMS)
    systems: dict[str, type[System]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        found = load(name)
        if isinstance(found, str):
            skipped[name] = found
        else:
            systems[name] = found
    os.environ["BENCH_ARQ_POLL_DELAY"] = str(args.arq_poll_delay)
    runs: Runs = {name: [] for name in systems}
    errors: list[str] = []
    with redis_server() as url:
        server = await report.server_info(url)
        for i in range(args.runs):
            print(f"run {i + 1}/{args.runs}", flush=True)
            for name, figs in (await one_run(systems, url, sizes, args.only, errors)).items():
                runs[name].append(figs)
    result = report.Result(
        quick=args.quick, sizes=sizes, runs=runs, medians=medians(runs), ratios=ratios(runs),
        systems={n: (c.driven, c(url).versions()) for n, c in systems.items()},
        skipped=skipped, errors=errors, server=server, argv=sys.argv[1:],
    )  # fmt: skip
    table = report.write(result, Path(args.out))
    print(table)
    return 1 if errors else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, stop at 100k queued")
    parser.add_argument("--runs", type=int, help="runs to take the median of (default 3, quick 1)")
    parser.add_argument("--system", action="append", choices=list(SYSTEMS), help="repeatable")
    parser.add_argument("--only", action="append", default=[], choices=list(SCENARIOS))
    parser.add_argument("--arq-poll-delay", type=float, default=0.01, help="seconds (arq: 0.5)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
