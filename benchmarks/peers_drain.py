"""Drain rates of taskit and all seven peers, with both job bodies, side by side.

    benchmarks/.venv-peers/bin/python -m benchmarks.peers_drain --quick    # ~3 minutes
    benchmarks/.venv-peers/bin/python -m benchmarks.peers_drain            # 5,000 jobs, median of 3

For each job body (``ran``: the job only appends a line to a file; ``io``: it makes one Redis
call first; ``benchmarks/peers/bodies.py``), as an ``async def`` and as a plain ``def``, and for
each system that runs such a function: the jobs are queued, one worker (as the system's docs
start it, ``benchmarks/README.md``) drains them, and the runner reads the file: every job counted
exactly (a missing or extra line fails the run), the rate from the first job's end to the last's,
the worker's CPU (its whole process tree) and Redis's CPU (``INFO``) per job over that span.
Systems take turns within each run; ratios taskit / peer are taken within a run, then the median.
Writes ``benchmarks/results/peers-drain-<date>[-quick].md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from benchmarks._machine import machine_line, package_versions
from benchmarks._proctree import session_cpu
from benchmarks._server import redis_server
from benchmarks._workers import WorkerGroup
from benchmarks.peers import SYSTEMS, System, load
from benchmarks.peers.base import NotSupported

__all__ = ["main"]

Figures = dict[str, float]
#: (body, plain def?) in the order they run; keys of the figures are "<body>[_sync]".
CASES = (("ran", False), ("ran", True), ("io", False), ("io", True))
STARTUP = 30.0
POLL = 0.002
_ids = itertools.count()


def _lines(path: Path) -> list[float]:
    return [float(v) for v in path.read_text().split()] if path.exists() else []


async def _redis_cpu(client: Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def drain_case(cls: type[System], url: str, jobs: int, body: str, sync: bool) -> Figures:
    """Queue ``jobs`` (times the system's ``drain_share``), start one worker, wait until the
    file holds that many lines."""
    jobs = max(100, int(jobs * cls.drain_share))
    client = Redis.from_url(url)
    await client.flushall()
    system = cls(url)
    await system.open()
    try:
        await system.fill(jobs, sync_job=sync, body=body)
    finally:
        await system.close()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "ran"
        group = WorkerGroup(system.worker_command(), f"{cls.name}-{next(_ids)}", url, "none")
        group.env["BENCH_JOB_FILE"] = str(path)
        group.start()
        try:
            deadline = time.monotonic() + STARTUP + jobs / 10
            while not path.exists() or not path.stat().st_size:
                group.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError("no job ran")
                await asyncio.sleep(POLL)
            cpu0, rcpu0 = session_cpu(group.procs[0].pid), await _redis_cpu(client)
            while (done := path.stat().st_size) and len(_lines(path)) < jobs:
                group.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(_lines(path))} of {jobs} jobs ran")
                await asyncio.sleep(0.02 if done < jobs else POLL)
            cpu1, rcpu1 = session_cpu(group.procs[0].pid), await _redis_cpu(client)
            await asyncio.sleep(0.2)  # a job run twice would add a line by now
            ends = _lines(path)
        except TimeoutError as exc:
            tail = group.log.read_text(errors="replace")[-1500:]
            raise TimeoutError(f"{cls.name}: {exc}; the worker's log ends:\n{tail}") from None
        finally:
            group.stop()
            await client.aclose()
    key = f"{body}_sync" if sync else body
    if len(ends) != jobs:  # more lines than jobs: a job ran twice (fewer timed out above)
        print(f"  MISMATCH {cls.name} {key}: {len(ends)} runs of {jobs} jobs", flush=True)
    span = sorted(ends)[jobs - 1] - min(ends)
    return {
        f"{key}_extra_runs": len(ends) - jobs,
        f"{key}_rate": (jobs - 1) / span,
        f"{key}_jobs": jobs,
        f"{key}_cpu_us": (cpu1 - cpu0) / (jobs - 1) * 1e6,
        f"{key}_redis_us": (rcpu1 - rcpu0) / (jobs - 1) * 1e6,
    }


async def one_run(systems: dict[str, type[System]], url: str, jobs: int) -> dict[str, Figures]:
    out: dict[str, Figures] = {name: {} for name in systems}
    for body, sync in CASES:
        for name, cls in systems.items():
            began = time.perf_counter()
            try:
                out[name] |= await drain_case(cls, url, jobs, body, sync)
            except NotSupported:
                continue
            kind = "def" if sync else "async"
            print(f"  {name:9} {body:4} {kind:5} {time.perf_counter() - began:6.1f} s", flush=True)
    return out


def summarise(runs: dict[str, list[Figures]]) -> tuple[dict[str, Figures], dict[str, Figures]]:
    """Medians per system and figure; ratios taskit / peer within each run, then the median."""
    medians = {
        name: {k: statistics.median(r[k] for r in rs if k in r) for k in {k for r in rs for k in r}}
        for name, rs in runs.items()
    }
    ratios: dict[str, Figures] = {}
    for peer, rs in runs.items():
        if peer == "taskit" or "taskit" not in runs:
            continue
        pairs: dict[str, list[float]] = {}
        for ours, theirs in zip(runs["taskit"], rs, strict=True):
            for k in ours.keys() & theirs.keys():
                if theirs[k] and not k.endswith(("_extra_runs", "_jobs")):
                    pairs.setdefault(k, []).append(ours[k] / theirs[k])
        ratios[peer] = {k: statistics.median(v) for k, v in pairs.items()}
    return medians, ratios


ROWS = [
    (f"{b}{'_sync' if s else ''}_{f}", f"{label}, {'def' if s else 'async def'}, {what}", unit)
    for b, label in (("ran", "proves it ran"), ("io", "one Redis call"))
    for s in (False, True)
    for f, what, unit in (
        ("rate", "drain ↑", "jobs/s"),
        ("cpu_us", "worker CPU per job ↓", "µs"),
        ("redis_us", "Redis CPU per job ↓", "µs"),
    )
]


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def markdown(
    args: argparse.Namespace,
    runs: dict[str, list[Figures]],
    versions: dict[str, str],
    driven: dict[str, str],
    jobs: int,
) -> str:
    medians, ratios = summarise(runs)
    names = list(medians)
    peers = [n for n in names if n != "taskit"]
    mode = "QUICK: one run, small, noisy" if args.quick else f"median of {args.runs} runs"
    lines = [
        "# Drains, taskit and its peers, both job bodies, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} "
        f"UTC ({mode})",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"{jobs:,} jobs queued, then one worker drains them. Command: `python -m "
        f"benchmarks.peers_drain {' '.join(sys.argv[1:])}`. Ratios taskit / peer within each "
        "run, then the median (↓ rows: below 1 favours taskit). n/a: the system runs no such "
        "function. RQ drains a twentieth of the jobs (its fork per job is slow; `drain_share`). "
        f"taskit's worker: `--loop {args.taskit_loop}`.",
        "",
        "| figure | unit | " + " | ".join(names) + "".join(f" | taskit/{p}" for p in peers) + " |",
        "|---|---|" + "---:|" * (len(names) + len(peers)),
    ]
    for key, label, unit in ROWS:
        cells = [_fmt(medians[n].get(key)) for n in names]
        cells += [_fmt(ratios.get(p, {}).get(key)) for p in peers]
        lines.append(f"| {label} | {unit} | " + " | ".join(cells) + " |")
    extra = [
        f"{n} {k.removesuffix('_extra_runs')}: {int(v)} run(s) more than jobs queued"
        for n, rs in runs.items()
        for r in rs
        for k, v in r.items()
        if k.endswith("_extra_runs") and v
    ]
    lines += [
        "",
        "Jobs run more than once (each job counted; a line per run): "
        + ("; ".join(extra) if extra else "none")
        + ".",
    ]
    lines += ["", "How each worker was run:", ""]
    lines += [f"- **{n}**: {d}" for n, d in driven.items()]
    return "\n".join(lines) + "\n"


def save(
    args: argparse.Namespace,
    runs: dict[str, list[Figures]],
    versions: dict[str, str],
    driven: dict[str, str],
    jobs: int,
) -> str:
    """Write ``peers-drain-<date>[-quick].md`` and ``.json`` under ``args.out``; the table."""
    medians, ratios = summarise(runs)
    table = markdown(args, runs, versions, driven, jobs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = (
        out
        / f"peers-drain-{time.strftime('%Y-%m-%d', time.gmtime())}{'-quick' if args.quick else ''}"
    )
    stem.with_suffix(".md").write_text(table)
    raw = {
        "runs": runs,
        "medians": medians,
        "ratios": ratios,
        "versions": versions,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_line(),
        "jobs": jobs,
        "argv": sys.argv[1:],
    }
    stem.with_suffix(".json").write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    return table


async def main(args: argparse.Namespace) -> int:
    jobs = 1_000 if args.quick else args.jobs
    systems: dict[str, type[System]] = {}
    for name in args.system or list(SYSTEMS):
        found = load(name)
        if isinstance(found, str):
            raise SystemExit(f"{name}: {found}")
        systems[name] = found
    runs: dict[str, list[Figures]] = {name: [] for name in systems}
    with redis_server() as url:
        version = (await Redis.from_url(url).info("server"))["redis_version"]
        for i in range(args.runs):
            print(f"run {i + 1}/{args.runs}", flush=True)
            for name, figures in (await one_run(systems, url, jobs)).items():
                runs[name].append(figures)
    versions = package_versions(("redis", "hiredis")) | {"redis-server": str(version)}
    for cls in systems.values():
        versions |= cls(url).versions()
    driven = {n: c.driven for n, c in systems.items()}
    table = save(args, runs, versions, driven, jobs)
    print(table)
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 jobs, one run")
    parser.add_argument("--runs", type=int, help="runs to take the median of (default 3)")
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs per drain (full mode)")
    parser.add_argument("--system", action="append", choices=list(SYSTEMS), help="repeatable")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--taskit-loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="taskit worker's --loop (auto: uvloop when installed)",
    )
    args = parser.parse_args(argv)
    os.environ["BENCH_TASKIT_LOOP"] = args.taskit_loop
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
