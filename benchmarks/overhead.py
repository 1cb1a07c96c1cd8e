"""The worker's own overhead: CPU per job and drain rate of no-op jobs, this tree beside another.

A job that does nothing but prove it ran (``benchmarks.probe.tally``, well under a microsecond)
measures what the framework itself costs a job: reserve, decode, run, settle, log. For each
variant below, ``--jobs`` jobs are queued on a private ``redis-server`` and drained by one
``taskit worker benchmarks.peers.taskit_app:app`` process (its defaults: concurrency 10, its log
written to a file as a service manager would); the probe reports the worker's CPU
(``time.process_time``, every thread) and the time from the first job to the last.

Variants: ``async-asyncio`` (an ``async def`` job, plain asyncio, INFO logging: the CLI's default),
``async-uvloop`` (the same on uvloop), ``sync-asyncio`` (a ``def`` job, run in a thread),
``async-quiet`` (asyncio with ``--log-level WARNING``, as the peers are run). Each runs once per
tree per round, the trees in turn (``--base``, default ``main``, then this tree), over ``--runs``
rounds (5); the table gives the medians and the ratio of this tree to the base.

The base is checked out into a temporary git worktree; both trees' workers use this tree's
benchmark app and probe, and only their own ``taskit`` (a directory holding a link to it comes
first on ``PYTHONPATH``). Writes ``benchmarks/results/overhead-<date>[-<tag>].md`` and ``.json``.

    .venv/bin/python -m benchmarks.overhead [--base main] [--runs 5] [--jobs 20000] [--port P]
        [--only VARIANT ...] [--tag TAG]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

from benchmarks._machine import machine_line, package_versions
from benchmarks._server import redis_server
from benchmarks.probe import done_key, probe_key

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
APP = "benchmarks.peers.taskit_app:app"
#: A drain that has not finished by then is a failure.
TIMEOUT = 300.0


@dataclass(frozen=True)
class Variant:
    label: str
    task: str
    loop: str
    level: str = "INFO"


VARIANTS = {
    "async-asyncio": Variant("async no-op, asyncio, INFO logging", "noop", "asyncio"),
    "async-uvloop": Variant("async no-op, uvloop, INFO logging", "noop", "uvloop"),
    "sync-asyncio": Variant("sync no-op (def), asyncio, INFO logging", "noop_sync", "asyncio"),
    "async-quiet": Variant("async no-op, asyncio, WARNING logging", "noop", "asyncio", "WARNING"),
}


@dataclass(frozen=True)
class Tree:
    """A taskit source tree, and the directory put first on ``PYTHONPATH`` for it."""

    name: str
    path: Path
    shim: Path

    @property
    def pythonpath(self) -> str:
        return f"{self.shim}{os.pathsep}{ROOT}"  # its taskit, this tree's benchmarks

    # Processes run in ``shim``: ``python -m`` puts the working directory first on sys.path.


def make_tree(name: str, path: Path, scratch: Path) -> Tree:
    shim = scratch / f"shim-{name}"
    shim.mkdir()
    (shim / "taskit").symlink_to(path / "taskit", target_is_directory=True)
    return Tree(name, path, shim)


@contextmanager
def base_tree(rev: str, scratch: Path) -> Iterator[tuple[str, Path]]:
    """``rev`` checked out (detached) into a temporary worktree; its short sha and path."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = scratch / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield sha, path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False,
                       capture_output=True)  # fmt: skip


def enqueue(tree: Tree, url: str, task: str, jobs: int) -> None:
    """Queue ``jobs`` jobs of ``task`` with the tree's own taskit (its wire format)."""
    env = {**os.environ, "PYTHONPATH": tree.pythonpath, "BENCH_REDIS_URL": url}
    argv = [sys.executable, "-m", "benchmarks.overhead", "--enqueue", task, str(jobs)]
    done = subprocess.run(argv, cwd=tree.shim, env=env, check=True, capture_output=True, text=True)
    used = Path(done.stdout.strip()).resolve()
    if not used.is_relative_to(tree.path.resolve()):  # the figures would be another tree's
        raise RuntimeError(f"the {tree.name} run imported taskit from {used}")


def _enqueue_here(task_name: str, jobs: int) -> None:
    import taskit
    from benchmarks.peers.taskit_app import app  # the taskit first on PYTHONPATH

    task = app.get_task(task_name)
    for start in range(0, jobs, 1000):
        app.enqueue_many_sync([task.prepare() for _ in range(min(1000, jobs - start))])
    app.close_sync()
    print(taskit.__file__)  # checked by the caller: the tree meant


def drain(tree: Tree, url: str, variant: Variant, jobs: int) -> dict[str, float]:
    """One drain of ``jobs`` queued jobs by one worker process; its figures."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    enqueue(tree, url, variant.task, jobs)
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ, "PYTHONPATH": tree.pythonpath, "BENCH_REDIS_URL": url, "BENCH_RUN": run,
        "BENCH_PROBE": "final", "BENCH_EXPECT": str(jobs),
    }  # fmt: skip
    argv = [sys.executable, "-m", "taskit", "worker", APP, "--loop", variant.loop,
            "--log-level", variant.level]  # fmt: skip
    with tempfile.NamedTemporaryFile(prefix="overhead-", suffix=".log") as log:
        proc = subprocess.Popen(argv, cwd=tree.shim, env=env, stdout=log, stderr=log,
                                start_new_session=True)  # fmt: skip
        try:
            report = _wait_done(client, proc, run, Path(log.name))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        log_bytes = Path(log.name).stat().st_size
    client.close()
    n = jobs - 1  # the figures span the first job's end to the last's
    cpu = report["process_time_last"] - report["process_time_first"]
    return {
        "cpu_us": cpu / n * 1e6,
        "rate": n / (report["last"] - report["first"]),
        "log_bytes": log_bytes / jobs,
    }


def _wait_done(
    client: redis.Redis, proc: subprocess.Popen[bytes], run: str, log: Path
) -> dict[str, float]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        popped = client.blpop([done_key(run)], timeout=1)
        if popped is not None:
            raw = client.get(probe_key(run, int(popped[1])))
            assert raw is not None, "the probe signalled done without a report"
            report: dict[str, float] = json.loads(raw)
            return report
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
    raise TimeoutError(f"jobs not drained after {TIMEOUT:.0f} s")


def measure(
    trees: list[Tree], url: str, only: list[str], jobs: int, runs: int
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """variant -> tree name -> one figures dict per round."""
    out: dict[str, dict[str, list[dict[str, float]]]] = {
        key: {tree.name: [] for tree in trees} for key in only
    }
    for i in range(runs):
        for key in only:
            for tree in trees:
                figures = drain(tree, url, VARIANTS[key], jobs)
                out[key][tree.name].append(figures)
                cpu, rate = figures["cpu_us"], figures["rate"]
                print(f"round {i + 1}/{runs} {key:14} {tree.name:10} {cpu:7.1f} us/job "
                      f"{rate:8.0f} jobs/s", flush=True)  # fmt: skip
    return out


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def report(
    base: str, only: list[str], jobs: int, runs: int,
    figures: dict[str, dict[str, list[dict[str, float]]]],
) -> tuple[str, dict[str, object]]:  # fmt: skip
    when = datetime.now(UTC)
    lines = [
        f"# The worker's own overhead, this tree against {base}, {when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        f"Versions: {versions()}.",
        f"`python -m benchmarks.overhead --base {base} --runs {runs} --jobs {jobs}`: {jobs:,} "
        "no-op jobs (each proving it ran) queued on a private redis-server, drained by one "
        f"`taskit worker {APP}` process (concurrency 10, its log to a file); worker CPU "
        "(`time.process_time`, all threads) per job and jobs/s from the first job to the last; "
        f"median of {runs} rounds, the trees in turn in each round.",
        "",
        f"| variant | CPU µs/job {base} | CPU µs/job this tree | ratio | jobs/s {base} | "
        "jobs/s this tree | ratio | log bytes/job (this tree) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict[str, object] = {}
    for key in only:
        old, new = figures[key][base], figures[key]["this tree"]
        cpu_old, cpu_new = median(old, "cpu_us"), median(new, "cpu_us")
        rate_old, rate_new = median(old, "rate"), median(new, "rate")
        lines.append(
            f"| {VARIANTS[key].label} | {cpu_old:.1f} | {cpu_new:.1f} | {cpu_new / cpu_old:.2f} | "
            f"{rate_old:,.0f} | {rate_new:,.0f} | {rate_new / rate_old:.2f} | "
            f"{median(new, 'log_bytes'):.0f} |"
        )
        summary[key] = {
            "cpu_us": {base: cpu_old, "this tree": cpu_new},
            "rate": {base: rate_old, "this tree": rate_new},
        }
    data = {
        "when": when.isoformat(), "machine": machine_line(), "versions": versions(),
        "base": base, "jobs": jobs, "runs": figures, "medians": summary,
    }  # fmt: skip
    return "\n".join(lines) + "\n", data


def versions() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        server = out.split("v=")[1].split()[0]
    except (OSError, IndexError):
        server = "unknown"
    found = package_versions(("taskit", "msgspec", "anyio", "uvloop", "hiredis"))
    found["redis-server"] = server
    return ", ".join(f"{name} {number}" for name, number in found.items())


def main(args: argparse.Namespace) -> str:
    only = args.only or list(VARIANTS)
    with tempfile.TemporaryDirectory() as tmp, base_tree(args.base, Path(tmp)) as (sha, path):
        scratch = Path(tmp)
        trees = [make_tree(sha, path, scratch), make_tree("this tree", ROOT, scratch)]
        with redis_server(port=args.port) as url:
            figures = measure(trees, url, only, args.jobs, args.runs)
    table, data = report(sha, only, args.jobs, args.runs, figures)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.tag}" if args.tag else ""
    stem = RESULTS / f"overhead-{datetime.now(UTC):%Y-%m-%d}{suffix}"
    stem.with_suffix(".md").write_text(table)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    return table


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the tree to compare with (a git rev)")
    parser.add_argument("--runs", type=int, default=5, help="rounds (median)")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--only", action="append", choices=list(VARIANTS), help="repeatable")
    parser.add_argument("--port", type=int, default=0, help="redis-server port (default: free)")
    parser.add_argument("--tag", default="", help="results file: overhead-<date>-<tag>.md")
    parser.add_argument("--enqueue", nargs=2, metavar=("TASK", "N"), help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    if options.enqueue:
        _enqueue_here(options.enqueue[0], int(options.enqueue[1]))
    else:
        print(main(options))
