"""taskit now against taskit at an earlier commit, side by side: what a change cost.

Run as ``python -m benchmarks.versus REV [--runs N] [--only SCENARIO ...]``. It checks REV out
into a temporary git worktree and runs ``python -m benchmarks.run --quick --system taskit`` of
each tree in turn (REV, this tree, REV, ...), each with its own tree first on ``PYTHONPATH`` (so
its workers import that taskit), on this machine in the same minutes. It prints the median of
each figure per tree and their ratio, and writes ``benchmarks/results/versus-<rev>-<date>.md``.
These machines are noisy: only ratios of medians measured this way mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks._machine import machine_line

HERE = Path(__file__).resolve().parent.parent
RESULTS = HERE / "benchmarks" / "results"
#: The figures compared (keys of benchmarks.run's medians), with their names and which way is good.
FIGURES = {
    "enqueue_rate": ("single enqueue (jobs/s)", "up"),
    "enqueue_of_floor": ("single enqueue / bare PING round trips", "up"),
    "drain_rate": ("drain, 1 worker process (jobs/s)", "up"),
    "drain_cpu_us": ("worker CPU per job (µs)", "down"),
    "drain_cmds": ("Redis commands per job, worker side", "down"),
    "latency_p50_ms": ("latency p50 (ms)", "down"),
    "latency_p99_ms": ("latency p99 (ms)", "down"),
    "drain_rss_mb": ("worker peak RSS (MB)", "down"),
}
#: The scenarios compared when ``--only`` is not given.
DEFAULT_ONLY = ["enqueue", "drain", "latency"]


def one_run(tree: Path, only: list[str], out: Path) -> dict[str, float]:
    """One ``benchmarks.run --quick`` of the taskit in ``tree``; its medians."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-m", "benchmarks.run", "--quick", "--system", "taskit"]
    argv += [f"--only={name}" for name in only] + [f"--out={out}"]
    subprocess.run(argv, cwd=tree, env=env, check=True, capture_output=True, text=True)
    [made] = out.glob("*.json")
    medians: dict[str, float] = json.loads(made.read_text())["medians"]["taskit"]
    made.unlink()
    return medians


def main(rev: str, runs: int, only: list[str]) -> str:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=HERE, check=True, capture_output=True, text=True
    ).stdout.strip()
    figures: dict[str, list[dict[str, float]]] = {sha: [], "this tree": []}
    with tempfile.TemporaryDirectory() as scratch:
        old = Path(scratch) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), sha], cwd=HERE,
                       check=True, capture_output=True)  # fmt: skip
        try:
            for i in range(runs):
                for name, tree in ((sha, old), ("this tree", HERE)):
                    print(f"run {i + 1}/{runs}: {name}", flush=True)
                    figures[name].append(one_run(tree, only, Path(scratch) / "out"))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=HERE,
                           check=False, capture_output=True)  # fmt: skip
    return report(sha, runs, only, figures)


def report(sha: str, runs: int, only: list[str], figures: dict[str, list[dict[str, float]]]) -> str:
    when = datetime.now(UTC)
    lines = [
        f"# taskit at {sha} against this tree, {when.date().isoformat()}",
        "",
        f"Measured {when:%Y-%m-%d %H:%M} UTC with `python -m benchmarks.versus {sha} --runs {runs}"
        + "".join(f" --only {name}" for name in only)
        + "`: `benchmarks.run --quick` of each tree "
        f"in turn, median of {runs} runs each. {machine_line()} Python {sys.version.split()[0]}.",
        "",
        f"| figure | {sha} | this tree | ratio (this / {sha}) |",
        "|---|---:|---:|---:|",
    ]
    for key, (label, better) in FIGURES.items():
        old = [f[key] for f in figures[sha] if f.get(key) is not None]
        new = [f[key] for f in figures["this tree"] if f.get(key) is not None]
        if not old or not new:
            continue
        a, b = statistics.median(old), statistics.median(new)
        arrow = "↑" if better == "up" else "↓"
        lines.append(f"| {label} {arrow} | {a:,.2f} | {b:,.2f} | {b / a:.2f} |")
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    scope = "" if only == DEFAULT_ONLY else "-" + "-".join(only)  # one file per comparison
    (RESULTS / f"versus-{sha}{scope}-{when.date().isoformat()}.md").write_text(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier commit (any git revision)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", action="append", default=[], help="benchmarks.run scenarios")
    options = parser.parse_args()
    print(main(options.rev, options.runs, options.only or DEFAULT_ONLY))
