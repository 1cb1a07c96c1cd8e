"""Many producers in one process (issue 19, target 2): do concurrent enqueues share round trips?

Starts a private ``redis-server`` (or uses ``--url``) and times, by the public API, enqueues of a
no-op job:

* **floor**: bare ``PING`` round trips awaited one after another (``_floor``): no enqueue from
  one sequential producer can go faster;
* **async, 1 producer**: ``await task.enqueue()`` in a loop;
* **async, 64 producers**: 64 coroutines on one event loop, each enqueueing one job at a time
  (as 64 concurrent requests of an ASGI server would), sharing the App's command connection;
* **enqueue_sync, 1 thread** and **enqueue_sync, 8 threads**: ``task.enqueue_sync()`` in a loop
  from one thread, and from 8 threads at once (a WSGI server's thread pool).

Every scenario runs once per round, the rounds interleaved (a busy moment on the machine hits
them all); each figure is the median (range in brackets) of ``--runs`` (5) rounds, and each
ratio is taken within a round, then the median of those. Also the producer's CPU per job
(``time.process_time``, every thread of the process) and Redis's (``INFO`` ``used_cpu_*``), and
Redis's read events per job (``total_reads_processed``: about one per round trip, so fewer than
one per job means commands shared a write). Writes ``benchmarks/results/producers-<date>.md``
and ``.json``; docs/performance.md quotes it.

With ``--versus REV`` it measures taskit at git revision ``REV`` (checked out into a temporary
worktree) beside this tree instead, each round running every scenario once per tree, each tree
in a process of its own (its taskit first on ``PYTHONPATH``), on the same redis-server, trees
alternating; it reports both trees' figures and their ratios per round (this tree / ``REV``),
and writes ``benchmarks/results/producers-versus-<rev>-<date>.md`` and ``.json`` (``--tag T``
adds ``-T`` to either file's name).

    .venv/bin/python -m benchmarks.producers [--runs 5] [--jobs 6400] [--url redis://...]
    .venv/bin/python -m benchmarks.producers --versus main [--runs 5] [--jobs 6400] [--tag T]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from benchmarks._floor import ping_rate
from benchmarks._machine import machine_line, package_versions
from benchmarks._server import redis_server
from taskit import App, Task

RESULTS = Path(__file__).parent / "results"
WARMUP = 200
TASKS = 64
THREADS = 8


@dataclass(frozen=True)
class Run:
    rate: float  # jobs (or round trips) per second
    client_us: float  # producer CPU per job, every thread
    user_us: float  # of which in user space (the Python), every thread
    server_us: float  # Redis CPU per job
    reads: float  # Redis read events per job


def _noop_app(url: str) -> tuple[App, Task[..., Any]]:
    app = App(url)

    @app.task(name="noop")
    async def noop() -> None: ...

    return app, noop


def _server(client: redis.Redis) -> tuple[float, int]:
    info = client.info("all")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"]), int(
        info["total_reads_processed"]
    )


@contextmanager
def _timed(client: redis.Redis, jobs: int, out: list[Run]) -> Iterator[None]:
    """Time the block's ``jobs`` enqueues; append the ``Run``."""
    (cpu_before, reads_before), cpu = _server(client), time.process_time()
    user = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    began = time.perf_counter()
    yield
    wall = time.perf_counter() - began
    user = resource.getrusage(resource.RUSAGE_SELF).ru_utime - user
    cpu_after, reads_after = _server(client)
    out.append(
        Run(
            rate=jobs / wall,
            client_us=(time.process_time() - cpu) / jobs * 1e6,
            user_us=user / jobs * 1e6,
            server_us=(cpu_after - cpu_before) / jobs * 1e6,
            reads=(reads_after - reads_before - 1) / jobs,  # less the first INFO's own read
        )
    )


def floor(url: str, client: redis.Redis, jobs: int) -> Run:
    rate = asyncio.run(ping_rate(url, jobs))
    return Run(rate=rate, client_us=0.0, user_us=0.0, server_us=0.0, reads=1.0)


def _async(url: str, client: redis.Redis, jobs: int, tasks: int) -> Run:
    async def main() -> Run:
        app, noop = _noop_app(url)
        out: list[Run] = []
        try:
            for _ in range(WARMUP):
                await noop.enqueue()

            async def produce(count: int) -> None:
                for _ in range(count):
                    await noop.enqueue()

            each = jobs // tasks
            with _timed(client, each * tasks, out):
                await asyncio.gather(*(produce(each) for _ in range(tasks)))
            return out[0]
        finally:
            await app.close()

    return asyncio.run(main())


def async_one(url: str, client: redis.Redis, jobs: int) -> Run:
    return _async(url, client, jobs, 1)


def async_many(url: str, client: redis.Redis, jobs: int) -> Run:
    return _async(url, client, jobs, TASKS)


def _sync(url: str, client: redis.Redis, jobs: int, threads: int) -> Run:
    app, noop = _noop_app(url)
    out: list[Run] = []
    try:
        for _ in range(WARMUP):
            noop.enqueue_sync()
        each = jobs // threads
        start = threading.Barrier(threads + 1)

        def produce() -> None:
            start.wait()
            for _ in range(each):
                noop.enqueue_sync()

        workers = [threading.Thread(target=produce) for _ in range(threads)]
        for worker in workers:
            worker.start()
        with _timed(client, each * threads, out):
            start.wait()
            for worker in workers:
                worker.join()
        return out[0]
    finally:
        app.close_sync()


def sync_one(url: str, client: redis.Redis, jobs: int) -> Run:
    return _sync(url, client, jobs, 1)


def sync_many(url: str, client: redis.Redis, jobs: int) -> Run:
    return _sync(url, client, jobs, THREADS)


SCENARIOS: dict[str, Callable[[str, redis.Redis, int], Run]] = {
    "floor (PING, one at a time)": floor,
    "enqueue, 1 producer": async_one,
    f"enqueue, {TASKS} producers": async_many,
    "enqueue_sync, 1 thread": sync_one,
    f"enqueue_sync, {THREADS} threads": sync_many,
}

#: (name, numerator, denominator): each ratio taken within a round.
RATIOS = [
    (f"{TASKS} producers / 1 producer", f"enqueue, {TASKS} producers", "enqueue, 1 producer"),
    ("1 producer / floor", "enqueue, 1 producer", "floor (PING, one at a time)"),
    (
        f"enqueue_sync {THREADS} threads / 1 thread",
        f"enqueue_sync, {THREADS} threads",
        "enqueue_sync, 1 thread",
    ),
    ("enqueue_sync 1 thread / floor", "enqueue_sync, 1 thread", "floor (PING, one at a time)"),
]


def _suffix(opts: argparse.Namespace) -> str:
    """The results file's name suffix: ``-<tag>`` when ``--tag`` is given."""
    return f"-{opts.tag}" if opts.tag else ""


def _tag_flag(opts: argparse.Namespace) -> str:
    return f" --tag {opts.tag}" if opts.tag else ""


def _median(values: list[float], digits: int = 0) -> str:
    fmt = f",.{digits}f"
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def _report(opts: argparse.Namespace, runs: dict[str, list[Run]]) -> None:
    when = datetime.now(UTC)
    versions = package_versions(("taskit", "redis", "hiredis"))
    ratios = {
        name: [a.rate / b.rate for a, b in zip(runs[top], runs[bottom], strict=True)]
        for name, top, bottom in RATIOS
    }
    lines = [
        f"# Many producers in one process ({when:%Y-%m-%d})",
        "",
        f"`python -m benchmarks.producers --runs {opts.runs} --jobs {opts.jobs}{_tag_flag(opts)}`: "
        "a no-op job "
        f"enqueued {opts.jobs:,} times per scenario and round, on a private redis-server on "
        f"loopback; median [range] of {opts.runs} interleaved rounds. Producer CPU per job "
        "counts every thread of the process; Redis reads per job is `total_reads_processed` per "
        "job (about one per round trip: below one, commands shared a write).",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "| scenario | jobs/s | producer µs/job | of which user | Redis µs/job | Redis reads/job |",
        "|---|---|---|---|---|---|",
    ]
    for name, got in runs.items():
        lines.append(
            f"| {name} | {_median([r.rate for r in got])} "
            f"| {_median([r.client_us for r in got])} | {_median([r.user_us for r in got])} "
            f"| {_median([r.server_us for r in got])} | {_median([r.reads for r in got], 2)} |"
        )
    lines += ["", "| ratio (within a round) | median [range] |", "|---|---|"]
    lines += [f"| {name} | {_median(values, 2)} |" for name, values in ratios.items()]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"producers-{when:%Y-%m-%d}{_suffix(opts)}"
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    record = {
        "date": when.isoformat(),
        "machine": machine_line(),
        "versions": versions,
        "runs": opts.runs,
        "jobs": opts.jobs,
        "scenarios": {name: [asdict(r) for r in got] for name, got in runs.items()},
        "ratios": {name: statistics.median(values) for name, values in ratios.items()},
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}.md and .json")


def _measure(url: str, opts: argparse.Namespace) -> dict[str, list[Run]]:
    client = redis.Redis.from_url(url)
    runs: dict[str, list[Run]] = {name: [] for name in SCENARIOS}
    try:
        for _ in range(opts.runs):
            for name, measure in SCENARIOS.items():
                got = measure(url, client, opts.jobs)
                runs[name].append(got)
                print(f"{name:32} {got.rate:9,.0f}/s {got.client_us:6.0f} µs", flush=True)
            client.flushdb()
    finally:
        client.close()
    return runs


def _one_round(url: str, jobs: int) -> None:
    """One round of every scenario, printed as JSON (a ``--versus`` child process)."""
    client = redis.Redis.from_url(url)
    try:
        got = {name: asdict(measure(url, client, jobs)) for name, measure in SCENARIOS.items()}
        client.flushdb()
    finally:
        client.close()
    print(json.dumps(got))


def _round_of(tree: Path, url: str, jobs: int) -> dict[str, Run]:
    """A round run by the taskit (and benchmark helpers) of ``tree``, in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, __file__, "--one-round", "--url", url, "--jobs", str(jobs)]
    done = subprocess.run(argv, cwd=tree, env=env, check=True, capture_output=True, text=True)
    return {name: Run(**fields) for name, fields in json.loads(done.stdout).items()}


def _versus(rev: str, url: str, opts: argparse.Namespace) -> None:
    here = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(here)]
    sha = subprocess.run([*git, "rev-parse", "--short", rev], check=True, capture_output=True,
                         text=True).stdout.strip()  # fmt: skip
    trees = {sha: Path(tempfile.mkdtemp()) / "old", "this tree": here}
    subprocess.run([*git, "worktree", "add", "--detach", str(trees[sha]), sha], check=True,
                   capture_output=True)  # fmt: skip
    runs: dict[str, list[dict[str, Run]]] = {name: [] for name in trees}
    try:
        for i in range(opts.runs):
            for name, tree in trees.items():
                runs[name].append(_round_of(tree, url, opts.jobs))
                print(f"round {i + 1}/{opts.runs}: {name} done", flush=True)
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(trees[sha])], check=False,
                       capture_output=True)  # fmt: skip
    _report_versus(sha, opts, runs)


def _report_versus(
    sha: str, opts: argparse.Namespace, runs: dict[str, list[dict[str, Run]]]
) -> None:
    when = datetime.now(UTC)
    old, new = runs[sha], runs["this tree"]
    lines = [
        f"# Many producers: taskit at {sha} against this tree ({when:%Y-%m-%d})",
        "",
        f"`python -m benchmarks.producers --versus {sha} --runs {opts.runs} --jobs {opts.jobs}"
        f"{_tag_flag(opts)}`: "
        f"each round runs every scenario once per tree ({sha} first), each tree in a process "
        "of its own on one private redis-server; median [range] of the rounds; each ratio "
        "(this tree / the other) taken within a round.",
        "",
        machine_line(),
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in package_versions(("redis", "hiredis")).items()),
        "",
        f"| scenario | jobs/s {sha} | jobs/s this | producer µs/job {sha} | producer µs/job this "
        f"| user µs/job {sha} | user µs/job this | Redis µs/job {sha} | Redis µs/job this "
        f"| Redis reads/job {sha} | Redis reads/job this | CPU/job this/{sha} "
        f"| jobs/s this/{sha} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    record: dict[str, Any] = {}
    for name in SCENARIOS:
        a, b = [r[name] for r in old], [r[name] for r in new]
        cpu = [y.client_us / x.client_us if x.client_us else 0.0 for x, y in zip(a, b, strict=True)]
        rate = [y.rate / x.rate for x, y in zip(a, b, strict=True)]
        record[name] = {
            sha: [asdict(r) for r in a],
            "this tree": [asdict(r) for r in b],
            "cpu_ratio": statistics.median(cpu),
            "rate_ratio": statistics.median(rate),
        }
        lines.append(
            f"| {name} | {_median([r.rate for r in a])} | {_median([r.rate for r in b])} "
            f"| {_median([r.client_us for r in a])} | {_median([r.client_us for r in b])} "
            f"| {_median([r.user_us for r in a])} | {_median([r.user_us for r in b])} "
            f"| {_median([r.server_us for r in a])} | {_median([r.server_us for r in b])} "
            f"| {_median([r.reads for r in a], 2)} | {_median([r.reads for r in b], 2)} "
            f"| {_median(cpu, 2)} | {_median(rate, 2)} |"
        )
    lines += ["", f"| ratio (within a round) | {sha} | this tree |", "|---|---|---|"]
    for name, top, bottom in RATIOS:
        both = [[r[top].rate / r[bottom].rate for r in tree] for tree in (old, new)]
        lines.append(f"| {name} | {_median(both[0], 2)} | {_median(both[1], 2)} |")
        record[name] = {sha: statistics.median(both[0]), "this tree": statistics.median(both[1])}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"producers-versus-{sha}-{when:%Y-%m-%d}{_suffix(opts)}"
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    meta = {"date": when.isoformat(), "machine": machine_line(), "runs": opts.runs,
            "jobs": opts.jobs}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps({**meta, **record}, indent=2) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}.md and .json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=6400)
    parser.add_argument("--url", help="a Redis to use (its db is flushed) instead of a private one")
    parser.add_argument("--versus", metavar="REV", help="measure taskit at REV beside this tree")
    parser.add_argument("--tag", help="suffix of the results file's name (keeps others' files)")
    parser.add_argument("--one-round", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.one_round:
        _one_round(opts.url, opts.jobs)
        return
    with contextlib.ExitStack() as stack:
        url = opts.url or stack.enter_context(redis_server())
        if opts.versus:
            _versus(opts.versus, url, opts)
        else:
            _report(opts, _measure(url, opts))


if __name__ == "__main__":
    main()
