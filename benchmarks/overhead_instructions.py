"""The worker's own overhead in instructions: callgrind's count per no-op job, this tree beside
another.

The companion of ``benchmarks.overhead`` for a noisy, shared machine: instead of CPU time, the
instructions one ``taskit worker --burst`` process executes (``valgrind --tool=callgrind``,
which counts them exactly, whatever else runs) to drain ``--jobs`` no-op jobs, minus those of a
drain of ``--small`` jobs (the start, the imports and the exit cancel out), per job. The
variants are ``benchmarks.overhead``'s (an ``async def`` or ``def`` job, INFO or WARNING
logging, its log to a file). A run is not fully deterministic (how many jobs each reserve and
each settle batch holds depends on timing), so each count is the median of ``--runs``.

    .venv/bin/python -m benchmarks.overhead_instructions [--base main] [--jobs 2000]
        [--small 200] [--runs 1] [--only VARIANT ...] [--port P] [--tag TAG]

Writes ``benchmarks/results/overhead-instructions-<date>[-<tag>].md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import redis

from benchmarks._machine import machine_line
from benchmarks._server import redis_server
from benchmarks.overhead import (
    APP,
    VARIANTS,
    Tree,
    Variant,
    base_tree,
    enqueue,
    make_tree,
    versions,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
_TOTAL = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def instructions(tree: Tree, url: str, variant: Variant, jobs: int, scratch: Path) -> int:
    """Instructions of one ``taskit worker --burst`` draining ``jobs`` queued jobs."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    enqueue(tree, url, variant.task, jobs)
    out = scratch / "callgrind.out"
    env = {**os.environ, "PYTHONPATH": tree.pythonpath, "BENCH_REDIS_URL": url}
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
            "taskit", "worker", APP, "--burst", "--loop", variant.loop, "--log-level",
            variant.level]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        subprocess.run(argv, cwd=tree.shim, env=env, stdout=log, stderr=log, check=True,
                       timeout=900)  # fmt: skip
    found = _TOTAL.search(out.read_text())
    out.unlink()
    if found is None:
        raise RuntimeError("callgrind wrote no total")
    return int(found.group(1))


def main(args: argparse.Namespace) -> str:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH")
    only = args.only or ["async-asyncio", "async-quiet"]
    per_job: dict[str, dict[str, list[float]]] = {key: {} for key in only}
    with tempfile.TemporaryDirectory() as tmp, base_tree(args.base, Path(tmp)) as (sha, path):
        scratch = Path(tmp)
        trees = [make_tree(sha, path, scratch), make_tree("this tree", ROOT, scratch)]
        with redis_server(port=args.port) as url:
            for i in range(args.runs):
                for key in only:
                    for tree in trees:
                        big = instructions(tree, url, VARIANTS[key], args.jobs, scratch)
                        small = instructions(tree, url, VARIANTS[key], args.small, scratch)
                        each = (big - small) / (args.jobs - args.small)
                        per_job[key].setdefault(tree.name, []).append(each)
                        print(f"run {i + 1}/{args.runs} {key:14} {tree.name:10} "
                              f"{each:10,.0f} instructions/job", flush=True)  # fmt: skip
    when = datetime.now(UTC)
    lines = [
        f"# The worker's instructions per no-op job, this tree against {sha}, "
        f"{when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        f"Versions: {versions()}.",
        f"`python -m benchmarks.overhead_instructions --base {args.base} --jobs {args.jobs} "
        f"--small {args.small} --runs {args.runs}`: one `taskit worker {APP} --burst` process "
        f"(concurrency 10, its log to a file) under `valgrind --tool=callgrind` drains "
        f"{args.jobs:,} queued no-op jobs, less a drain of {args.small:,}, per job; median of "
        f"{args.runs}.",
        "",
        f"| variant | instructions/job {sha} | this tree | ratio |",
        "|---|---:|---:|---:|",
    ]
    for key in only:
        old = statistics.median(per_job[key][sha])
        new = statistics.median(per_job[key]["this tree"])
        lines.append(f"| {VARIANTS[key].label} | {old:,.0f} | {new:,.0f} | {new / old:.3f} |")
    table = "\n".join(lines) + "\n"
    data = {"when": when.isoformat(), "machine": machine_line(), "versions": versions(),
            "base": sha, "jobs": args.jobs, "small": args.small, "per_job": per_job}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.tag}" if args.tag else ""
    stem = RESULTS / f"overhead-instructions-{when:%Y-%m-%d}{suffix}"
    stem.with_suffix(".md").write_text(table)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    return table


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the tree to compare with (a git rev)")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs in the measured drain")
    parser.add_argument("--small", type=int, default=200, help="jobs in the drain subtracted")
    parser.add_argument("--runs", type=int, default=1, help="runs (median)")
    parser.add_argument("--only", action="append", choices=list(VARIANTS), help="repeatable")
    parser.add_argument("--port", type=int, default=0, help="redis-server port (default: free)")
    parser.add_argument("--tag", default="", help="results file suffix")
    return parser.parse_args()


if __name__ == "__main__":
    print(main(parse()))
