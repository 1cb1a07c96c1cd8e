"""How long a `taskit worker` takes from its process's spawn to ready, and to its first job.

A job is queued on a private ``redis-server`` first (``benchmarks.peers.taskit_app``'s ``stamp``,
which pushes the ``time.monotonic()`` at which it started: one clock for every process of the
machine); then ``taskit worker benchmarks.peers.taskit_app:app --loop LOOP`` is spawned. Per run:

* **spawn → ready**: to the worker's ``starting: queues=`` log line (its loops are about to
  reserve; the line's time has millisecond resolution);
* **spawn → first job**: to the queued job's start, in the job itself;
* **RSS**: the worker's resident memory (``VmRSS`` of ``/proc/PID/status``) once its first job
  has started (issue 19's target 7: at most 40 MB).

For context, the same spawn of a bare ``python -c pass`` and of ``python -c "import taskit.cli"``
(the interpreter's own start, and the imports every `taskit` command pays). Median of ``--runs``
(5), range in brackets, milliseconds.

With ``--base REV``, that commit (checked out into a temporary git worktree, as
``benchmarks.overhead`` does) is measured too, the two trees in turn within each run, and the
table gives each tree's row and the ratio of this tree's median to the base's. Each tree's
worker queues its job and runs with its own ``taskit`` and this tree's benchmark app.
Each tree's ``taskit`` and ``benchmarks`` are compiled to bytecode first (``compileall``), as
pip compiles an installed package: with ``PYTHONDONTWRITEBYTECODE=1`` (set on this machine) an
uncompiled source tree is compiled anew by every process (``import taskit.cli`` 155 ms from
source against 110 compiled, start-time-2026-12-01-lean*.md). ``--source`` skips that step
(then a tree that holds no bytecode yet is measured
compiling). Writes ``benchmarks/results/start-time-<date>[-SUFFIX].md``.

    .venv/bin/python -m benchmarks.start_time [--runs 5] [--port P] [--base REV] [--suffix S]
                                              [--source]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

from benchmarks._machine import machine_line
from benchmarks._server import redis_server
from benchmarks.overhead import Tree, base_tree, make_tree
from benchmarks.probe import latency_key
from benchmarks.stop_time import Worker, log_time, versions

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
APP = "benchmarks.peers.taskit_app:app"
RUN = "start"
BARE = (("pass", "`python -c pass`"), ("import taskit.cli", '`python -c "import taskit.cli"`'))


@dataclass(frozen=True)
class Start:
    """One worker's start: seconds from spawn to ready and to its first job; its RSS in kB."""

    ready: float
    first: float
    rss_kb: int


def queue_one(url: str) -> None:
    """Queue one ``stamp(0.0)`` job: it pushes its absolute start time (monotonic)."""
    from benchmarks.peers.taskit_app import make_app

    app = make_app(url)
    try:
        app.get_task("stamp").enqueue_sync(0.0)
    finally:
        app.close_sync()


def queue_with(tree: Tree, url: str) -> None:
    """``queue_one`` run with the tree's own taskit (its wire format)."""
    env = {**os.environ, "PYTHONPATH": tree.pythonpath}
    argv = [sys.executable, "-m", "benchmarks.start_time", "--queue", url]
    subprocess.run(argv, cwd=tree.shim, env=env, check=True, capture_output=True)


def rss_kb(pid: int) -> int:
    """The resident memory of process ``pid`` (``VmRSS``), kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def one_worker(url: str, loop: str, tree: Tree) -> Start:
    """One worker of ``tree`` started with a job waiting; its figures."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    queue_with(tree, url)
    env = {"BENCH_REDIS_URL": url, "BENCH_RUN": RUN, "TASKIT_BROKER_URL": url}
    spawned, spawned_wall = time.monotonic(), time.time()
    worker = Worker(env, loop, app=APP, where=tree.shim, pythonpath=tree.pythonpath)
    try:
        popped = client.blpop([latency_key(RUN)], timeout=30)
        if popped is None:
            raise RuntimeError(f"the job did not start:\n{''.join(worker.lines)}")
        started = float(popped[1])
        ready = log_time(worker.wait_for("starting: queues="))
        memory = rss_kb(worker.proc.pid)
    finally:
        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(30)
        client.close()
    return Start(ready - spawned_wall, started - spawned, memory)


def bare(code: str, tree: Tree) -> float:
    """Seconds for ``python -c code`` to run and exit, with the tree's taskit."""
    env = {**os.environ, "PYTHONPATH": tree.pythonpath}
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=tree.shim, env=env, check=True)
    return time.monotonic() - began


def ms(values: list[float]) -> str:
    median = statistics.median(values) * 1000
    return f"{median:.0f} ({min(values) * 1000:.0f} to {max(values) * 1000:.0f})"


def mb(values: list[int]) -> str:
    low, median, high = (v / 1024 for v in (min(values), statistics.median(values), max(values)))
    return f"{median:.1f} ({low:.1f} to {high:.1f})"


def ratio(new: list[float], old: list[float]) -> str:
    return f"{statistics.median(new) / statistics.median(old):.2f}"


def compile_tree(tree: Tree) -> None:
    """Bytecode for the tree's taskit and this tree's benchmarks, as an installed package has."""
    for folder in (tree.path / "taskit", ROOT / "benchmarks"):
        argv = [sys.executable, "-m", "compileall", "-q", str(folder)]
        subprocess.run(argv, check=True, capture_output=True)


def measure(trees: list[Tree], runs: int, port: int) -> list[str]:
    """The table's rows: every figure of every tree, the trees in turn within each run."""
    loops = ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") else ["asyncio"]
    rows: list[str] = []
    exits: dict[tuple[str, str], list[float]] = {(t.name, c): [] for t in trees for c, _ in BARE}
    for _ in range(runs):
        for code, _label in BARE:
            for tree in trees:
                exits[tree.name, code].append(bare(code, tree))
    for code, label in BARE:
        rows += [
            f"| {label} (exit) | {t.name} | {ms(exits[t.name, code])} | - | - |" for t in trees
        ]
        if len(trees) == 2:
            new, old = exits[trees[1].name, code], exits[trees[0].name, code]
            rows.append(f"| {label} (exit) | ratio | {ratio(new, old)} | - | - |")
    with redis_server(port=port) as url:
        for loop in loops:
            starts: dict[str, list[Start]] = {t.name: [] for t in trees}
            for _ in range(runs):
                for tree in trees:
                    starts[tree.name].append(one_worker(url, loop, tree))
            label = f"`taskit worker {APP} --loop {loop}`"
            for tree in trees:
                got = starts[tree.name]
                rows.append(
                    f"| {label} | {tree.name} | {ms([s.ready for s in got])} | "
                    f"{ms([s.first for s in got])} | {mb([s.rss_kb for s in got])} |"
                )
                print(rows[-1], flush=True)
            if len(trees) == 2:
                new, old = starts[trees[1].name], starts[trees[0].name]
                rows.append(
                    f"| {label} | ratio | {ratio([s.ready for s in new], [s.ready for s in old])}"
                    f" | {ratio([s.first for s in new], [s.first for s in old])} | "
                    f"{ratio([s.rss_kb for s in new], [s.rss_kb for s in old])} |"
                )
    return rows


def main(runs: int, port: int, base: str | None, suffix: str | None, source: bool) -> str:
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        trees = [make_tree("this tree", ROOT, scratch)]
        if base is not None:
            sha, path = stack.enter_context(base_tree(base, scratch))
            trees.insert(0, make_tree(f"base {sha}", path, scratch))
        if not source:
            for tree in trees:
                compile_tree(tree)
        rows = measure(trees, runs, port)
    when = datetime.now(UTC)
    options = (f" --runs {runs}" if runs != 5 else "") + (f" --base {base}" if base else "")
    options += " --source" if source else ""
    lines = [
        f"# Starting a worker, {when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        f"Versions: {versions()}.",
        f"Median of {runs} runs, range in brackets, milliseconds from the process's spawn; one "
        "job queued on a private redis-server before the spawn; the worker's RSS once its job "
        "started. "
        + ("The trees in turn within each run. " if base else "")
        + ("Trees not compiled first. " if source else "Trees compiled to bytecode first. ")
        + "Command: "
        f"`python -m benchmarks.start_time{options}"
        + (f" --suffix {suffix}`." if suffix else "`."),
        "",
        "| process | tree | spawn → ready | spawn → first job starts | RSS after start, MB |",
        "|---|---|---:|---:|---:|",
        *rows,
    ]
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"start-time-{when:%Y-%m-%d}" + (f"-{suffix}" if suffix else "")
    (RESULTS / f"{name}.md").write_text(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per row (median)")
    parser.add_argument("--port", type=int, default=0, help="redis-server port (default: free)")
    parser.add_argument("--base", help="also measure this git rev, in turn (e.g. main)")
    parser.add_argument("--suffix", help="results file start-time-<date>-SUFFIX.md")
    parser.add_argument("--source", action="store_true", help="do not compile the trees first")
    parser.add_argument("--queue", metavar="URL", help=argparse.SUPPRESS)  # queue_with's child
    options = parser.parse_args()
    if options.queue:
        queue_one(options.queue)
    else:
        print(main(options.runs, options.port, options.base, options.suffix, options.source))
