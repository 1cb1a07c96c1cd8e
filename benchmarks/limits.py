"""What limits cost on Redis: the drain rate of jobs over 1,000 keys with a per-key concurrency
of 1, against the same jobs unlimited; and the start rate under a global rate limit of R/s.

Starts its own ``redis-server`` (no persistence) and runs one in-process worker
(``--concurrency`` runners) per run, on a fresh key prefix. Each scenario runs ``--runs`` times
(default 5), the scenarios taking turns round by round; the table gives the median and, in
brackets, the range, and the overhead is the median of the rounds' ratios (limited against
unlimited, run side by side). Targets (issue 14): the per-key limit's drain rate within 15% of
the unlimited one; under rate R the measured start rate (steady state: starts after the first,
over the time from the first to the last) within 5% of R. The rate limit is declared with
``burst=1`` so starts are spaced from the first one on.
Writes ``benchmarks/results/limits-<date>.md`` and ``.json``, with the machine and versions.

    .venv/bin/python -m benchmarks.limits [--runs 5] [--jobs 10000] [--keys 1000] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio

from benchmarks._machine import machine_line, package_versions
from benchmarks._server import redis_server
from taskit import App, Limit, LimitUse, Settings
from taskit.broker.redis import RedisBroker

RESULTS = Path(__file__).parent / "results"
BATCH = 1000
#: What a scenario declares on its App: the limits its task uses.
Declare = Callable[[App], list[Limit | LimitUse]]


@dataclass(frozen=True)
class Run:
    """One drain: jobs done, seconds from the worker's start to its end, and the start times."""

    jobs: int
    seconds: float
    starts: list[float]

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def start_rate(self) -> float:
        """Starts per second after the first (the steady state of a rate limit)."""
        first, last = min(self.starts), max(self.starts)
        return (len(self.starts) - 1) / (last - first) if last > first else float("inf")


async def drain(url: str, jobs: int, keys: int, concurrency: int, declare: Declare) -> Run:
    """Enqueue ``jobs`` jobs over ``keys`` customers, then time one worker draining them."""
    broker = RedisBroker(url, prefix=f"bench-limits-{uuid.uuid4().hex[:8]}")
    app = App(broker, settings=Settings())
    uses = declare(app)
    starts: list[float] = []

    @app.task(name="work", limits=uses or None)
    async def work(customer: str) -> None:
        starts.append(time.perf_counter())

    for first in range(0, jobs, BATCH):
        batch = [work.prepare(f"c{i % keys}") for i in range(first, min(first + BATCH, jobs))]
        await app.enqueue_many(batch)
    began = time.perf_counter()
    stats = await app.worker(concurrency=concurrency).run(burst=True)
    seconds = time.perf_counter() - began
    if stats.completed != jobs:
        raise SystemExit(f"drained {stats.completed} of {jobs} jobs: {stats}")
    await app.close()
    return Run(jobs, seconds, starts)


def per_key(app: App) -> list[Limit | LimitUse]:
    return [app.limit("per-customer", concurrency=1).by("customer")]


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200, help="R: the global rate, starts/s")
    parser.add_argument("--rate-seconds", type=float, default=5.0, help="Length of a rate run.")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    rate_jobs = int(args.rate * args.rate_seconds) + 1
    with redis_server() as url:

        def one(jobs: int, declare: Declare) -> Run:
            return anyio.run(drain, url, jobs, args.keys, args.concurrency, declare)

        def rated_limits(app: App) -> list[Limit | LimitUse]:
            return [app.limit("api", rate=args.rate, burst=1)]

        # Side by side: each round runs the unlimited drain and then the limited one, so the
        # overhead is the median of ratios taken a few seconds apart (the machine drifts).
        unlimited: list[Run] = []
        keyed: list[Run] = []
        rate_free: list[Run] = []
        rated: list[Run] = []
        for _ in range(args.runs):
            unlimited.append(one(args.jobs, lambda app: []))
            keyed.append(one(args.jobs, per_key))
            rate_free.append(one(rate_jobs, lambda app: []))
            rated.append(one(rate_jobs, rated_limits))

    overhead = statistics.median(1 - k.rate / u.rate for u, k in zip(unlimited, keyed, strict=True))
    measured = statistics.median(r.start_rate for r in rated)
    off = measured / args.rate - 1
    jobs, keys = f"{args.jobs:,} jobs, {args.keys:,} keys", f"{rate_jobs:,} jobs"
    rows = [
        (f"{jobs}, unlimited", summary([r.rate for r in unlimited]), ""),
        (f"{jobs} x concurrency 1", summary([r.rate for r in keyed]),
         f"overhead {overhead:+.1%} (target <= 15%)"),
        (f"{keys}, unlimited", summary([r.rate for r in rate_free]), ""),
        (f"{keys}, global rate {args.rate}/s", summary([r.start_rate for r in rated]),
         f"start rate {measured:,.1f}/s, {off:+.1%} off R (target within 5%)"),
    ]  # fmt: skip
    when = datetime.now(UTC)
    versions = package_versions(("taskit", "redis", "hiredis", "anyio", "msgspec"))
    lines = [
        f"# Limits on Redis, {when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"One in-process worker, concurrency {args.concurrency}; median of {args.runs} runs "
        "[range]; jobs/s (the rate row: starts/s after the first).",
        "",
        "| scenario | jobs/s | note |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"limits-{when:%Y-%m-%d}"
    stem.with_suffix(".md").write_text(text)
    data = {
        "date": when.isoformat(), "machine": machine_line(), "versions": versions,
        "args": vars(args), "unlimited": [r.rate for r in unlimited],
        "keyed": [r.rate for r in keyed], "rate_unlimited": [r.rate for r in rate_free],
        "rate_starts": [r.start_rate for r in rated], "overhead": overhead, "rate_off": off,
    }  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
