"""Redis CPU per single enqueue on 1 and 3 Redis Cluster masters at a paced, low rate: a
check of ``benchmarks/shards.py``'s finding that a job costs Redis more CPU spread over more
masters.

Under full load a master with a third of the requests reads fewer of them per wake-up, so the
two cannot be compared request for request. Here one coroutine enqueues ``--jobs`` no-op jobs one
after another at ``--rate`` jobs/s, so that no two requests overlap: every request is a round
trip and, at a low enough rate, a wake-up of its master, on one master as on three. If a job
still costs the masters more CPU when spread over three, the cause is not how requests are
batched but the masters themselves (each of three processes runs a third as often on the shared
cores, and comes back to colder caches). Configurations as in ``shards.py`` (``(1, 1)``,
``(3, 3)``, ``(3, 1)``), taking turns for ``--rounds`` rounds; each master's idle CPU is
measured over 5 s first and taken off (net), the raw figure kept beside it. Writes
``benchmarks/results/shards-paced-<date>.md`` and ``.json``.

    .venv/bin/python -m benchmarks.shards_paced [--rate 1000] [--jobs 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import anyio

from benchmarks._cluster import BenchCluster
from benchmarks._machine import machine_line, package_versions
from benchmarks._shards_report import Phase, config_name, redis_server_version
from benchmarks.peers.taskit_app import make_app
from benchmarks.shards import PREFIX, busy_core_seconds, idle_rates, parse_configs, phase

RESULTS = Path(__file__).parent / "results"
CONFIGS = "1:1,3:3,3:1"


async def paced(cluster: BenchCluster, url: str, jobs: int, rate: float) -> Phase:
    """Enqueue ``jobs`` no-op jobs one after another, one every ``1 / rate`` s (or as fast as
    they go if slower), reading the masters' counters around them."""
    app = make_app(url)
    noop = app.get_task("noop")
    try:
        for _ in range(50):  # connections made, scripts loaded
            await noop.enqueue()
        before, busy, began = cluster.counters(), busy_core_seconds(), anyio.current_time()
        for k in range(jobs):
            await anyio.sleep(max(0.0, began + k / rate - anyio.current_time()))
            await noop.enqueue()
        seconds = anyio.current_time() - began
        after, busy = cluster.counters(), busy_core_seconds() - busy
    finally:
        await app.close()
    return phase(jobs, seconds, before, after, busy)


def _median(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def report(
    rounds: list[dict[str, Phase]],
    configs: list[tuple[int, int]],
    opts: argparse.Namespace,
    idle: dict[int, list[float]],
) -> tuple[str, dict[str, object]]:
    when = datetime.now(UTC)
    versions = package_versions(("taskit", "redis", "hiredis"))
    versions["redis-server"] = redis_server_version()
    one = config_name(1, 1)
    lines = [
        f"# Paced single enqueues on 1 and 3 Redis Cluster masters, {when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"`python -m benchmarks.shards_paced {' '.join(sys.argv[1:])}`: one coroutine enqueues "
        f"{opts.jobs:,} no-op jobs one after another at {opts.rate:,.0f} jobs/s (no two requests "
        f"overlap), configurations taking turns; median [range] of {opts.rounds} rounds, ratios "
        "within a round. Net: each master's idle CPU (measured over 5 s before the rounds: "
        + "; ".join(
            f"{m} masters {' / '.join(f'{r * 1e3:.2f}' for r in rates)} ms/s"
            for m, rates in sorted(idle.items())
        )
        + ") times the phase's seconds taken off.",
        "",
        "| masters | shards | jobs/s | Redis µs/job raw | net of idle | ratio to 1 master (net) "
        "| user µs | system µs | round trips/job | sleeps/job | preemptions/job |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for masters, shards in configs:
        name = config_name(masters, shards)
        got = [r[name] for r in rounds]
        ratio = (_median([r[name].net_us / r[one].net_us for r in rounds], ".2f")
                 if one in rounds[0] else "-")  # fmt: skip
        lines.append(
            f"| {masters} | {shards} | {_median([g.rate for g in got], ',.0f')} "
            f"| {_median([g.redis_us for g in got], '.1f')} "
            f"| {_median([g.net_us for g in got], '.1f')} | {ratio} "
            f"| {_median([g.redis_us - g.sys_us for g in got], '.1f')} "
            f"| {_median([g.sys_us for g in got], '.1f')} "
            f"| {_median([g.trips for g in got], '.2f')} "
            f"| {_median([g.wakeups for g in got], '.2f')} "
            f"| {_median([g.preemptions for g in got], '.3f')} |"
        )
    data: dict[str, object] = {
        "date": when.isoformat(), "machine": machine_line(), "versions": versions,
        "args": {**vars(opts), "command": " ".join(sys.argv[1:])},
        "idle_cpu_per_s": {str(m): r for m, r in idle.items()},
        "rounds": [{name: {"jobs": p.jobs, "seconds": p.seconds, "cpu": p.cpu, "sys": p.sys,
                           "reads": p.reads, "sleeps": p.sleeps, "preempted": p.preempted,
                           "redis_us": p.redis_us, "net_us": p.net_us}
                    for name, p in r.items()} for r in rounds],
    }  # fmt: skip
    return "\n".join(lines) + "\n", data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="jobs/s (1,000)")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs a phase (3,000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--configs", default=CONFIGS, help=f"masters:shards,... ({CONFIGS})")
    parser.add_argument("--tag", default="", help="added to the result files' names")
    opts = parser.parse_args()
    configs = parse_configs(opts.configs)
    rounds: list[dict[str, Phase]] = []
    with ExitStack() as stack:
        clusters = {
            m: stack.enter_context(BenchCluster(m)) for m in sorted({m for m, _ in configs})
        }
        idle = idle_rates(clusters)
        for i in range(opts.rounds):
            rounds.append({})
            for masters, shards in configs:
                cluster = clusters[masters]
                cluster.flushall()
                got = anyio.run(paced, cluster, cluster.url(PREFIX, shards), opts.jobs, opts.rate)
                got.idle = idle[masters]
                rounds[-1][config_name(masters, shards)] = got
                print(f"round {i + 1}: {masters} masters, {shards} shards: {got.rate:,.0f}/s, "
                      f"{got.redis_us:.1f} µs, {got.trips:.2f} trips, {got.wakeups:.2f} sleeps",
                      flush=True)  # fmt: skip
    text, data = report(rounds, configs, opts, idle)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    tag = f"-{opts.tag}" if opts.tag else ""
    stem = RESULTS / f"shards-paced-{datetime.now(UTC):%Y-%m-%d}{tag}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {stem}.md and .json")


if __name__ == "__main__":
    main()
