"""The hop of a sync (``def``) call to a handler thread and back: this tree beside another.

Per call, wall µs, CPU µs (``time.process_time``, every thread) and the process's context
switches (``getrusage``: what the noise of a shared machine moves least) of
``await run(noop)``:

* ``c1``: one call at a time (the loop idle while the thread runs it: every call pays a wake of
  the thread and a wake of the loop), ``--calls`` calls after a warm-up;
* ``p10``: ten callers at once, each awaiting its calls in turn (ten in flight: a busy pool,
  whose results go back in batches), over ten threads.

Hops: ``HandlerThreads`` (each tree's own), ``anyio.to_thread.run_sync`` and a floor (a
``queue.SimpleQueue`` feeding the threads, each result back by one
``loop.call_soon_threadsafe(future.set_result)``: no batching, no contexts, no abandon). Then the
worker's drain at concurrency 1 on the memory broker (``benchmarks.sqlite._taskit_drain``: 3,000
no-op jobs, ``Worker.run(burst=True)``) with a ``def`` job and, for reference, an ``async def``
one: µs a job, wall and CPU, and switches a job.

Each measurement runs in a process of its own with its tree's ``taskit`` first on
``PYTHONPATH``; within a round the base and this tree alternate, measurement by measurement, and
the table gives the medians over ``--runs`` rounds and the median of the per-round ratios
this / base (the machine is shared and noisy: only ratios measured side by side mean much).

    .venv/bin/python -m benchmarks.handler_hop [--base main] [--runs 5] [--calls 20000]

Writes ``benchmarks/results/handler-hop-<date>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from benchmarks._machine import machine_line, package_versions
from benchmarks.overhead import Tree, base_tree, make_tree

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: Threads in the pipelined measurement (the worker's default ``sync_concurrency``), and calls
#: in flight there.
THREADS = IN_FLIGHT = 10
DRAIN_JOBS = 3000
WARMUP = 500
#: (label, what ``--one`` runs, whether the base tree's figure is measured too).
MEASURES = (
    ("HandlerThreads c1", "hop threads c1", True),
    ("HandlerThreads p10", "hop threads p10", True),
    ("anyio.to_thread c1", "hop anyio c1", False),
    ("anyio.to_thread p10", "hop anyio p10", False),
    ("floor c1", "hop floor c1", False),
    ("floor p10", "hop floor p10", False),
    ("worker drain c1, def job", "drain def", True),
    ("worker drain c1, async def job", "drain async", True),
)
Run = dict[str, dict[str, float]]
Hop = Callable[[Callable[[], None]], Awaitable[None]]


# -- one measurement (a child process) ---------------------------------------------------------
class _Floor:
    """The least a hop can do on asyncio: a shared queue in, one loop callback out per call."""

    def __init__(self, size: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[tuple[Callable[[], None], asyncio.Future[None]] | None]
        self._queue = queue.SimpleQueue()
        self._size = size
        for _ in range(size):
            threading.Thread(target=self._work, daemon=True).start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future = item
            fn()
            self._loop.call_soon_threadsafe(future.set_result, None)

    async def run(self, fn: Callable[[], None]) -> None:
        future = self._loop.create_future()
        self._queue.put((fn, future))
        await future

    def close(self) -> None:
        for _ in range(self._size):
            self._queue.put(None)


def _noop() -> None:
    pass


async def _calls(hop: Hop, calls: int, in_flight: int) -> None:
    async def caller(n: int) -> None:
        for _ in range(n):
            await hop(_noop)

    async with anyio.create_task_group() as tg:
        for k in range(in_flight):
            tg.start_soon(caller, calls // in_flight + (k < calls % in_flight))


async def hop_here(which: str, shape: str, calls: int) -> dict[str, float]:
    """Per call µs, wall and CPU, of ``calls`` hops (after a warm-up)."""
    from taskit._threads import HandlerThreads  # the tree's own, first on PYTHONPATH

    in_flight, size = (1, 1) if shape == "c1" else (IN_FLIGHT, THREADS)
    close: Callable[[], None] = lambda: None  # noqa: E731
    if which == "threads":
        pool = HandlerThreads(size)
        hop, close = pool.run, pool.close
    elif which == "floor":
        floor = _Floor(size)
        hop, close = floor.run, floor.close
    else:
        limiter = anyio.CapacityLimiter(size)

        async def hop(fn: Callable[[], None]) -> None:
            await anyio.to_thread.run_sync(fn, limiter=limiter)

    try:
        await _calls(hop, WARMUP, in_flight)
        wall, cpu, switches = time.perf_counter(), time.process_time(), _switches()
        await _calls(hop, calls, in_flight)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        switches = _switches() - switches
    finally:
        close()
    per_call = {"wall_us": wall * 1e6, "cpu_us": cpu * 1e6, "switches": float(switches)}
    return {figure: value / calls for figure, value in per_call.items()}


def _switches() -> int:
    """The process's context switches so far, voluntary and not (every thread): a figure the
    machine's noise moves far less than time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def drain_here(body: str) -> dict[str, float]:
    """µs a job, wall (from ``_taskit_drain``'s rate) and CPU (the whole run: queueing too)."""
    from benchmarks.sqlite import _taskit_drain

    anyio.run(_taskit_drain, 500, 1, "normal", True, 0, body)  # warm-up (whole 500s)
    cpu, switches = time.process_time(), _switches()
    rate = anyio.run(_taskit_drain, DRAIN_JOBS, 1, "normal", True, 0, body)
    return {
        "wall_us": 1e6 / rate,
        "cpu_us": (time.process_time() - cpu) * 1e6 / DRAIN_JOBS,
        "switches": (_switches() - switches) / DRAIN_JOBS,
    }


def one(argv: list[str], calls: int) -> dict[str, float]:
    import taskit

    if argv[0] == "hop":
        figures = anyio.run(hop_here, argv[1], argv[2], calls)
    else:
        figures = drain_here(argv[1])
    figures["taskit_from"] = taskit.__file__  # type: ignore[assignment]
    return figures


def measure(tree: Tree, what: str, calls: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": tree.pythonpath}
    argv = [sys.executable, "-m", "benchmarks.handler_hop", "--calls", str(calls), "--one"]
    argv += what.split()
    done = subprocess.run(argv, cwd=tree.shim, env=env, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    used = Path(figures.pop("taskit_from")).resolve()
    if not used.is_relative_to(tree.path.resolve()):  # the figures would be another tree's
        raise RuntimeError(f"the {tree.name} run imported taskit from {used}")
    return figures


# -- the run -----------------------------------------------------------------------------------
def table(runs: list[Run]) -> str:
    lines = [
        "| hop | base wall µs | this wall µs | / base | base CPU µs | this CPU µs | / base "
        "| base switches | this switches |",
        "|---" * 9 + "|",
    ]

    def median(key: str, figure: str) -> str:
        values = [run[key][figure] for run in runs if key in run]
        return f"{statistics.median(values):.{2 if figure == 'switches' else 1}f}" if values else ""

    for label, _, both in MEASURES:
        cells = [label]
        for figure in ("wall_us", "cpu_us"):
            base, this = f"base {label}", f"this {label}"
            ratio = (
                f"{statistics.median(r[this][figure] / r[base][figure] for r in runs):.2f}"
                if both
                else ""
            )
            cells += [median(base, figure), median(this, figure), ratio]
        cells += [median(f"base {label}", "switches"), median(f"this {label}", "switches")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.calls)))
        return
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory() as scratch,
        base_tree(args.base, Path(scratch)) as (sha, path),
    ):
        base, this = make_tree("base", path, Path(scratch)), make_tree("this", ROOT, Path(scratch))
        for n in range(args.runs):
            run: Run = {}
            for label, what, both in MEASURES:
                # A/B, then B/A in the next round: neither tree always goes first.
                trees = [base, this] if both else [this]
                for tree in trees if n % 2 == 0 else trees[::-1]:
                    run[f"{tree.name} {label}"] = measure(tree, what, args.calls)
            runs.append(run)
            print(f"round {n + 1}:\n{table([run])}", flush=True)
    stamp = datetime.now(UTC)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    versions = ", ".join(f"{k} {v}" for k, v in package_versions(("anyio", "sniffio")).items())
    name = f"handler-hop-{stamp:%Y-%m-%d}"
    body = (
        f"# The hop to a handler thread and back ({stamp:%Y-%m-%d %H:%M} UTC)\n\n"
        f"`python -m benchmarks.handler_hop --base {args.base} --runs {args.runs} --calls "
        f"{args.calls}`; base {sha}; median of {args.runs} round(s), ratios this / base within "
        f"each round (the trees alternating); {machine_line()} {versions}; load average {load}. "
        f"Hops: µs a call of a no-op, `c1` one at a time, `p10` {IN_FLIGHT} in flight over "
        f"{THREADS} threads. Drains: µs a job of {DRAIN_JOBS} no-op jobs on the memory broker "
        "at concurrency 1 (CPU: the whole run, queueing included).\n\n" + table(runs) + "\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(body)
    (RESULTS / f"{name}.json").write_text(json.dumps({"runs": runs, "args": vars(args)}, indent=1))
    print(body)
    print(f"wrote {RESULTS / name}.md")


if __name__ == "__main__":
    main()
