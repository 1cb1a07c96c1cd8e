"""The result of a benchmark run as a Markdown table, a JSON file and a PNG figure."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from benchmarks._machine import cpu_model, machine_line, package_versions
from benchmarks.scenarios import Sizes

__all__ = ["Result", "server_info", "write"]

#: figure key -> (label, unit, True if higher is better); the table's rows, in order.
ROWS: dict[str, tuple[str, str, bool]] = {
    "enqueue_rate": ("single enqueue, async, one call per job", "jobs/s", True),
    "enqueue_sync_rate": ("single enqueue, sync spelling", "jobs/s", True),
    "ping_rate": ("floor: bare PING round trips, one at a time, same moment", "/s", True),
    "enqueue_of_floor": ("single enqueue rate / that floor", "", True),
    "batch_rate": ("batch enqueue (1,000 a call)", "jobs/s", True),
    "drain_rate": ("drain, 1 worker process, async no-op", "jobs/s", True),
    "drain_sync_rate": ("drain, 1 worker process, sync no-op", "jobs/s", True),
    "latency_p50_ms": ("enqueue-to-start latency p50, idle worker", "ms", False),
    "latency_p99_ms": ("enqueue-to-start latency p99, idle worker", "ms", False),
    "drain_cpu_us": ("worker CPU per job (async drain)", "µs", False),
    "drain_sync_cpu_us": ("worker CPU per job (sync drain)", "µs", False),
    "drain_rss_mb": ("worker peak RSS (VmHWM, async drain)", "MB", False),
    "enqueue_trips": ("Redis round trips per single enqueue", "", False),
    "enqueue_cmds": ("Redis commands per single enqueue", "", False),
    "drain_trips": ("Redis round trips per job, worker side", "", False),
    "drain_cmds": ("Redis commands per job, worker side", "", False),
    "queued_bytes_per_job": ("Redis memory per queued job (drain fill)", "B", False),
}
_DEPTH_ROWS = [
    ("depth_{d}_bytes_per_job", "Redis memory per queued job, {d:,} queued", "B", False),
    ("depth_{d}_enqueue_rate", "single enqueue, {d:,} already queued", "jobs/s", True),
    ("depth_{d}_drain_rate", "drain, 1 process, {d:,} already queued", "jobs/s", True),
]
_TAIL_ROWS = [
    ("delayed_enqueue_rate", "single enqueue, {d:,} delayed jobs waiting", "jobs/s", True),
    ("delayed_drain_rate", "drain, 1 process, {d:,} delayed jobs waiting", "jobs/s", True),
]


@dataclass
class Result:
    quick: bool
    sizes: Sizes
    runs: dict[str, list[dict[str, float]]]
    medians: dict[str, dict[str, float]]
    ratios: dict[str, dict[str, float]]
    systems: dict[str, tuple[str, dict[str, str]]]
    skipped: dict[str, str]
    errors: list[str]
    server: dict[str, str]
    argv: list[str]


async def server_info(url: str) -> dict[str, str]:
    client = Redis.from_url(url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return {"redis_version": str(info["redis_version"])}


def _rows(sizes: Sizes) -> list[tuple[str, str, str, bool]]:
    rows = [(key, *spec) for key, spec in ROWS.items()]
    for d in sizes.depths:
        rows += [(k.format(d=d), label.format(d=d), u, hi) for k, label, u, hi in _DEPTH_ROWS]
    rows += [(k, label.format(d=sizes.delayed), u, hi) for k, label, u, hi in _TAIL_ROWS]
    rows += [(f"procs_{p}_drain_rate", f"drain, {p} worker processes", "jobs/s", True)
             for p in sizes.procs]  # fmt: skip
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _versions(result: Result) -> dict[str, str]:
    out = package_versions(("redis", "hiredis", "anyio", "msgspec"))
    out["redis-server"] = result.server["redis_version"]
    for _, versions in result.systems.values():
        out |= versions
    return out


def markdown(result: Result, when: datetime) -> str:
    names = list(result.medians)
    peers = [n for n in names if n != "taskit" and "taskit" in names]
    mode = "QUICK mode: small sizes, one run, NOISY (not for citing)" if result.quick else "full"
    lines = [
        f"# taskit and peers, {when:%Y-%m-%d %H:%M} UTC ({mode})",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in _versions(result).items()) + ".",
        f"Sizes: {dataclasses.asdict(result.sizes)}; median of "
        f"{max((len(r) for r in result.runs.values()), default=0)} run(s). "
        f"Command: `python -m benchmarks.run {' '.join(result.argv)}`.",
        "",
        "Ratios are taskit / peer, computed within each run, then the median over runs; for "
        "rows marked ↓ lower is better, so a ratio below 1 favours taskit. n/a: the system has "
        "no such operation (or the scenario failed: see the notes).",
        "",
        "| figure | unit | " + " | ".join(names) + "".join(f" | taskit/{p}" for p in peers) + " |",
        "|---|---|" + "---:|" * (len(names) + len(peers)),
    ]
    for key, label, unit, higher in _rows(result.sizes):
        cells = [_fmt(result.medians[n].get(key)) for n in names]
        cells += [_fmt(result.ratios.get(p, {}).get(key)) for p in peers]
        arrow = "↑" if higher else "↓"
        lines.append(f"| {label} {arrow} | {unit} | " + " | ".join(cells) + " |")
    lines += ["", "How each system was driven:", ""]
    lines += [f"- **{name}**: {driven}" for name, (driven, _) in result.systems.items()]
    lines += [f"- **{name}**: skipped, {why}" for name, why in result.skipped.items()]
    if result.errors:
        lines += ["", "Scenarios that failed:", ""] + [f"- {e}" for e in result.errors]
    return "\n".join(lines) + "\n"


def figure(result: Result, path: Path) -> bool:
    """Drain rate against jobs queued when the worker starts, one line per system."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = result.sizes
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for name, med in result.medians.items():
        points = [(sizes.drain, med.get("drain_rate"))]
        points += [(d + sizes.enqueue, med.get(f"depth_{d}_drain_rate")) for d in sizes.depths]
        xs, ys = (
            zip(*sorted((x, y) for x, y in points if y is not None), strict=True)
            if any(y is not None for _, y in points)
            else ((), ())
        )
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("jobs queued when the worker starts")
    ax.set_ylabel("drain rate, 1 worker process (jobs/s)")
    ax.set_ylim(bottom=0)
    ax.set_title("Drain rate vs queue depth" + (" (quick, noisy)" if result.quick else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write(result: Result, out: Path) -> str:
    """Write ``bench-<date>[-quick].md``, ``.json`` and ``.png`` under ``out``; return the table."""
    when = datetime.now(UTC)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"bench-{when:%Y-%m-%d}{'-quick' if result.quick else ''}"
    table = markdown(result, when)
    if figure(result, stem.with_suffix(".png")):
        table += f"\n![drain rate vs queue depth]({stem.with_suffix('.png').name})\n"
    stem.with_suffix(".md").write_text(table)
    raw: dict[str, Any] = dataclasses.asdict(result)
    raw |= {"date": when.isoformat(), "machine": platform.node(), "cpu": cpu_model()}
    raw |= {"cores": os.cpu_count(), "versions": _versions(result)}
    stem.with_suffix(".json").write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    return table
