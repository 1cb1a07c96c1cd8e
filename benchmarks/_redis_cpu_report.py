"""The tables ``benchmarks/redis_cpu.py`` writes: Redis CPU per job by phase, the ratio taskit /
taskiq within each run, and where the microseconds go (per command, per script)."""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks._machine import machine_line, package_versions

if TYPE_CHECKING:
    from benchmarks.redis_cpu import Phase

__all__ = ["write_report"]

RESULTS = Path(__file__).parent / "results"
PHASES = ("enqueue", "drain")


def _us(phases: dict[str, Phase], jobs: int, phase: str | None = None) -> float:
    """Net Redis CPU µs per job in ``phase`` (None: the whole lifecycle)."""
    chosen = [phases[phase]] if phase else list(phases.values())
    return 1e6 * sum(p.net_cpu for p in chosen) / jobs


def _commands(phases: dict[str, Phase], jobs: int) -> float:
    """Commands per job over the lifecycle, top-level and inside scripts alike."""
    return sum(sum(p.calls.values()) for p in phases.values()) / jobs


def _cell(values: list[float], digits: int = 1) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def _summary(rounds: dict[str, list[dict[str, Phase]]], jobs: int, modes: list[str]) -> list[str]:
    lines = [
        "| system, enqueue | enqueue µs/job | drain µs/job | lifecycle µs/job | taskit / taskiq "
        "| commands/job | raw lifecycle µs/job |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in rounds.items():
        mode = label.split()[1]
        ratio = "—"
        peer = rounds.get(f"taskiq {mode}")
        if label.startswith("taskit") and peer and mode in modes:
            pairs = zip(runs, peer, strict=False)
            ratio = _cell([_us(a, jobs) / _us(b, jobs) for a, b in pairs], 2)
        raw = [1e6 * sum(p.cpu for p in r.values()) / jobs for r in runs]
        lines.append(
            f"| {label} | {_cell([_us(r, jobs, 'enqueue') for r in runs])} "
            f"| {_cell([_us(r, jobs, 'drain') for r in runs])} "
            f"| {_cell([_us(r, jobs) for r in runs])} "
            f"| {ratio} | {_cell([_commands(r, jobs) for r in runs])} | {_cell(raw)} |"
        )
    return lines


def _per_command(label: str, runs: list[dict[str, Phase]], jobs: int) -> list[str]:
    """Calls and usec per job by phase and command, summed over the runs."""
    lines = [
        f"**{label}**, `INFO commandstats` summed over the runs, per job "
        "(EVALSHA's usec holds the commands it ran):",
        "",
        "| phase | command | calls/job | usec/job | usec/call |",
        "|---|---|---:|---:|---:|",
    ]
    total = jobs * len(runs)
    for phase in PHASES:
        calls: dict[str, int] = {}
        usec: dict[str, int] = {}
        for r in runs:
            for name, n in r[phase].calls.items():
                calls[name] = calls.get(name, 0) + n
                usec[name] = usec.get(name, 0) + r[phase].usec[name]
        for name in sorted(calls, key=lambda n: -usec[n]):
            if calls[name] < total / 1000:
                continue  # a few calls a run: start-up, the probe's wait
            lines.append(
                f"| {phase} | {name} | {calls[name] / total:.3f} | {usec[name] / total:.2f} "
                f"| {usec[name] / calls[name]:.2f} |"
            )
    return [*lines, ""]


def _per_script(label: str, rows: dict[str, dict[str, float]], jobs: int) -> list[str]:
    lines = [
        f"**{label}**, one untimed round of {jobs} jobs with `SLOWLOG` at every command "
        "(EVALSHA by script, then the commands scripts ran; enqueue and drain together), per job:",
        "",
        "| command or script | calls/job | usec/job | usec/call |",
        "|---|---:|---:|---:|",
    ]
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["usec"]):
        if row["calls"] < jobs / 1000:
            continue
        lines.append(
            f"| {name} | {row['calls'] / jobs:.3f} | {row['usec'] / jobs:.2f} "
            f"| {row['usec'] / row['calls']:.2f} |"
        )
    return [*lines, ""]


def write_report(
    args: argparse.Namespace,
    rounds: dict[str, list[dict[str, Phase]]],
    scripts: dict[str, dict[str, dict[str, float]]],
    idle: float,
    server: str,
    slow_jobs: int,
) -> None:
    """Print the tables and write them to ``results/redis-cpu-<date>[-<tag>].md`` and ``.json``."""
    now = datetime.now(UTC)
    versions = package_versions(("taskit", "taskiq", "taskiq-redis", "redis", "hiredis"))
    versions["redis-server"] = server
    lines = [
        f"# Redis CPU per job lifecycle, taskit and taskiq, {now:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"`python -m benchmarks.redis_cpu --runs {args.runs} --jobs {args.jobs}`: {args.jobs} "
        "no-op jobs queued, then drained by one worker at concurrency 10; Redis CPU (INFO "
        f"used_cpu_user + used_cpu_sys) per job net of idle ({1e6 * idle:.0f} µs/s), median of "
        f"{args.runs} runs [range]; the ratio within each run. batch: taskit `enqueue_many` of "
        "1,000; taskiq (no batch API) 100 `kiq()` in flight.",
        "",
        *_summary(rounds, args.jobs, args.modes),
        "",
        "## Where the microseconds go",
        "",
    ]
    for label, runs in rounds.items():
        lines += _per_command(label, runs, args.jobs)
    for label, rows in scripts.items():
        lines += _per_script(label, rows, slow_jobs)
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"redis-cpu-{now:%Y-%m-%d}{'-' + args.tag if args.tag else ''}"
    stem.with_suffix(".md").write_text(table)
    record = {
        "date": now.isoformat(),
        "machine": machine_line(),
        "versions": versions,
        "args": vars(args),
        "idle_cpu_per_second": idle,
        "rounds": {
            k: [{p: asdict(v) for p, v in r.items()} for r in runs] for k, runs in rounds.items()
        },
        "scripts": scripts,
    }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
