"""How long a `taskit worker` takes from its process's spawn to ready, and to its first job.

A job is queued on a private ``redis-server`` first (``benchmarks.peers.taskit_app``'s ``stamp``,
which pushes the ``time.monotonic()`` at which it started: one clock for every process of the
machine); then ``taskit worker benchmarks.peers.taskit_app:app --loop LOOP`` is spawned. Per run:

* **spawn → ready**: to the worker's ``starting: queues=`` log line (its loops are about to
  reserve; the line's time has millisecond resolution);
* **spawn → first job**: to the queued job's start, in the job itself.

For context, the same spawn of a bare ``python -c pass`` and of ``python -c "import taskit.cli"``
(the interpreter's own start, and the imports every `taskit` command pays). Median of ``--runs``
(5), range in brackets, milliseconds. Writes ``benchmarks/results/start-time-<date>.md``.

    .venv/bin/python -m benchmarks.start_time [--runs 5] [--port P]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

from benchmarks._machine import machine_line
from benchmarks._server import redis_server
from benchmarks.probe import latency_key
from benchmarks.stop_time import Worker, log_time, versions

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
APP = "benchmarks.peers.taskit_app:app"
RUN = "start"


def queue_one(url: str) -> None:
    """Queue one ``stamp(0.0)`` job: it pushes its absolute start time (monotonic)."""
    from benchmarks.peers.taskit_app import make_app

    app = make_app(url)
    try:
        app.get_task("stamp").enqueue_sync(0.0)
    finally:
        app.close_sync()


def one_worker(url: str, loop: str) -> tuple[float, float]:
    """(spawn → ready, spawn → first job), seconds."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    queue_one(url)
    env = {"BENCH_REDIS_URL": url, "BENCH_RUN": RUN, "TASKIT_BROKER_URL": url}
    spawned, spawned_wall = time.monotonic(), time.time()
    worker = Worker(env, loop, app=APP)
    try:
        popped = client.blpop([latency_key(RUN)], timeout=30)
        if popped is None:
            raise RuntimeError(f"the job did not start:\n{''.join(worker.lines)}")
        started = float(popped[1])
        ready = log_time(worker.wait_for("starting: queues="))
    finally:
        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(30)
        client.close()
    return ready - spawned_wall, started - spawned


def bare(code: str) -> float:
    """Seconds for ``python -c code`` to run and exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    return time.monotonic() - began


def ms(values: list[float]) -> str:
    median = statistics.median(values) * 1000
    return f"{median:.0f} ({min(values) * 1000:.0f} to {max(values) * 1000:.0f})"


def main(runs: int, port: int) -> str:
    loops = ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") else ["asyncio"]
    rows: list[str] = []
    for code, label in (("pass", "`python -c pass`"),
                        ("import taskit.cli", '`python -c "import taskit.cli"`')):  # fmt: skip
        rows.append(f"| {label} (exit) | {ms([bare(code) for _ in range(runs)])} | - |")
    with redis_server(port=port) as url:
        for loop in loops:
            figures = [one_worker(url, loop) for _ in range(runs)]
            ready, first = [f[0] for f in figures], [f[1] for f in figures]
            rows.append(f"| `taskit worker {APP} --loop {loop}` | {ms(ready)} | {ms(first)} |")
            print(rows[-1], flush=True)
    when = datetime.now(UTC)
    lines = [
        f"# Starting a worker, {when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        f"Versions: {versions()}.",
        f"Median of {runs} runs, range in brackets, milliseconds from the process's spawn; one "
        "job queued on a private redis-server before the spawn. Command: "
        "`python -m benchmarks.start_time" + (f" --runs {runs}`." if runs != 5 else "`."),
        "",
        "| process | spawn → ready | spawn → first job starts |",
        "|---|---:|---:|",
        *rows,
    ]
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"start-time-{when:%Y-%m-%d}.md").write_text(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per row (median)")
    parser.add_argument("--port", type=int, default=0, help="redis-server port (default: free)")
    options = parser.parse_args()
    print(main(options.runs, options.port))
