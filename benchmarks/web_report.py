"""``benchmarks/web.py``'s results: the Markdown table, the JSON of every round, the PNG."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks._machine import machine_line, package_versions
from benchmarks.peers import load

if TYPE_CHECKING:
    from benchmarks.web import Round

__all__ = ["summary", "write"]

STACKS = {
    "asgi": "FastAPI + uvicorn, `await` enqueue, async job",
    "wsgi": "Flask + gunicorn (gthread, 8 threads), sync enqueue, plain-function job",
}

SHORT = {"asgi": "FastAPI + uvicorn", "wsgi": "Flask + gunicorn (gthread, 8 threads)"}


def summary(rounds: list[Round]) -> dict[str, dict[str, float | None]]:
    """Per "stack/procs/system": median req/s and worker CPU per job, and (taskit) the median
    over rounds of taskit / the best peer of that round."""
    out: dict[str, dict[str, float | None]] = {}
    for r in rounds:
        key = f"{r.stack}/{r.procs}/{r.system}"
        if key in out:
            continue
        mine = [x for x in rounds if (x.stack, x.procs, x.system) == (r.stack, r.procs, r.system)]
        out[key] = {
            "rps": statistics.median(x.rps for x in mine),
            "worker_cpu_us": _median([x.worker_cpu_us for x in mine]),
            "web_cpu_us": _median([x.web_cpu_us for x in mine]),
            "redis_cpu_us": _median([x.redis_cpu_us for x in mine]),
            "total_cpu_us": _median([_total(x) for x in mine]),
            "mismatches": float(sum(1 for x in mine if x.problems)),
        }
        if r.system == "taskit":
            ratios, cpu_ratios = [], []
            for x in mine:
                peers = [
                    p
                    for p in rounds
                    if (p.stack, p.procs, p.index) == (x.stack, x.procs, x.index)
                    and p.system not in ("taskit", "floor")
                ]
                if peers:
                    best = max(peers, key=lambda p: p.rps)
                    ratios.append(x.rps / best.rps)
                huey = [p for p in peers if p.system == "huey" and p.worker_cpu_us]
                if huey and x.worker_cpu_us is not None:
                    cpu_ratios.append(x.worker_cpu_us / (huey[0].worker_cpu_us or 1))
            out[key]["vs_best_peer"] = statistics.median(ratios) if ratios else None
            out[key]["cpu_vs_huey"] = statistics.median(cpu_ratios) if cpu_ratios else None
    return out


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _total(r: Round) -> float | None:
    """Web + worker + Redis CPU per request (the floor has no worker)."""
    if r.web_cpu_us is None or r.redis_cpu_us is None:
        return None
    return r.web_cpu_us + (r.worker_cpu_us or 0.0) + r.redis_cpu_us


def _fmt(v: float | None, digits: int = 0) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def markdown(
    args: argparse.Namespace,
    rounds: list[Round],
    versions: dict[str, str],
    when: datetime,
    took: float,
) -> str:
    summ = summary(rounds)
    mode = "QUICK: one short round, NOISY" if args.quick else f"median of {args.rounds} rounds"
    lines = [
        f"# Web traffic: a POST that enqueues one job, {when:%Y-%m-%d %H:%M} UTC ({mode})",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"wrk -t2 -c64, {args.warm:g} s warm-up, {args.seconds:g} s timed, a worker draining "
        f"throughout; rounds interleaved. Command: `python -m benchmarks.web "
        f"{' '.join(sys.argv[1:])}` ({took / 60:.1f} min); taskit's worker `--loop "
        f"{args.taskit_loop}`.",
        "",
        "taskit / best peer: taskit's req/s over the best peer's of the same round, the "
        "median over rounds. Worker CPU per job: the worker's whole process tree over the timed "
        "span and the drain after it, divided by the jobs enqueued in the span; web CPU: the "
        "web server's process tree, Redis CPU: `INFO cpu`, over the same time and jobs; total: "
        "the three (on 2 cores shared by all, req/s at saturation ≈ 2 s / total). `floor`: "
        "Flask that enqueues nothing, no worker (`--floor`).",
        "",
    ]
    for stack, title in STACKS.items():
        for procs in args.procs:
            keys = [k for k in summ if k.startswith(f"{stack}/{procs}/")]
            if not keys:
                continue
            lines += [
                f"## {title}, {procs} web process{'es' if procs > 1 else ''}",
                "",
                "| system | req/s ↑ | worker CPU per job (µs) ↓ | web CPU per request (µs) "
                "| Redis CPU per job (µs) | total CPU per request (µs) | rounds with a mismatch |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
            for k in keys:
                s = summ[k]
                lines.append(
                    f"| {k.rsplit('/', 1)[1]} | {_fmt(s['rps'])} | "
                    f"{_fmt(s['worker_cpu_us'])} | {_fmt(s['web_cpu_us'])} | "
                    f"{_fmt(s['redis_cpu_us'])} | {_fmt(s['total_cpu_us'])} | "
                    f"{_fmt(s['mismatches'])} |"
                )
            t = summ.get(f"{stack}/{procs}/taskit", {})
            lines += [
                "",
                f"taskit / best peer (req/s): **{_fmt(t.get('vs_best_peer'), 2)}**"
                + (
                    f"; taskit / Huey (worker CPU per job): **{_fmt(t.get('cpu_vs_huey'), 2)}**"
                    if stack == "wsgi"
                    else ""
                ),
                "",
            ]
    problems = [
        f"round {r.index + 1} {r.stack} {r.procs}p {r.system}: " + "; ".join(r.problems)
        for r in rounds
        if r.problems
    ]
    lines += [
        "## Checks",
        "",
        "Every round: jobs enqueued = jobs run; wrk's 2xx ≤ enqueued ≤ "
        "2xx + 64; no non-2xx, no socket errors. "
        + ("MISMATCHES:" if problems else "All rounds passed."),
    ]
    lines += [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def figure(args: argparse.Namespace, rounds: list[Round], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    summ = summary(rounds)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for ax, stack in zip(axes, STACKS, strict=True):
        systems = list(dict.fromkeys(r.system for r in rounds if r.stack == stack))
        width = 0.8 / max(1, len(args.procs))
        for j, procs in enumerate(args.procs):
            ys = [summ.get(f"{stack}/{procs}/{s}", {}).get("rps") or 0 for s in systems]
            xs = [i + j * width for i in range(len(systems))]
            ax.bar(xs, ys, width, label=f"{procs} web process{'es' if procs > 1 else ''}")
        ax.set_xticks([i + width * (len(args.procs) - 1) / 2 for i in range(len(systems))])
        ax.set_xticklabels(systems)
        ax.set_title(SHORT[stack], fontsize=10)
        ax.set_ylabel("requests/s (each enqueues one job)")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("wrk -c64, a worker draining" + (" (quick, noisy)" if args.quick else ""))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write(args: argparse.Namespace, rounds: list[Round], url: str, took: float) -> str:
    """Write ``web-<date>[-quick][-<tag>].md``, ``.json`` and ``.png`` under ``args.out``."""
    when = datetime.now(UTC)
    versions = package_versions(
        ("redis", "hiredis", "fastapi", "uvicorn", "uvloop", "flask", "gunicorn")
    )
    for system in dict.fromkeys(r.system for r in rounds if r.system != "floor"):
        cls = load(system)
        if not isinstance(cls, str):
            versions |= cls(url).versions()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = ("-quick" if args.quick else "") + (f"-{args.tag}" if args.tag else "")
    stem = out / f"web-{when:%Y-%m-%d}{tag}"
    table = markdown(args, rounds, versions, when, took)
    if figure(args, rounds, stem.with_suffix(".png")):
        table += f"\n![requests/s per system]({stem.with_suffix('.png').name})\n"
    stem.with_suffix(".md").write_text(table)
    raw = {
        "date": when.isoformat(),
        "machine": machine_line(),
        "versions": versions,
        "argv": sys.argv[1:],
        "rounds": [asdict(r) for r in rounds],
        "summary": summary(rounds),
    }
    stem.with_suffix(".json").write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    return table
