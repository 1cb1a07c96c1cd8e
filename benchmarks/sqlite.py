"""The SQLite broker (issue 18) against Huey's SQLite storage, in the same run, on the same disk.

* **Enqueue**, one producer: taskit's ``await task.enqueue(k)`` (one ``BEGIN IMMEDIATE``
  transaction a job, on the event loop when the write lock is free at once, else on the store's
  connection thread), ``task.enqueue_sync(k)`` (a sync
  caller: the transaction in the calling thread, as Huey's is) and ``app.enqueue_many`` in
  batches of 100; Huey's task call ``probe(k, t0)`` (Huey has no batch enqueue). Rate: jobs /
  wall time of the loop.
* **Drain**, one consumer over a full queue of no-op jobs: taskit's ``Worker`` (``run(burst=
  True)``, concurrency 1 and 10; again with ``prefetch`` 4, the row "--prefetch 4"; and with
  the job an ``async def``, rows "async def job": no handler thread) and, beneath
  it, the broker alone (``reserve`` of 10, then one ``settle`` of the 10); Huey's ``Consumer``
  with one worker thread (as ``huey_consumer`` runs by default) and with 10 (``-w 10``, set
  against taskit's concurrency 10). Rate: jobs / time from the
  consumer's start to its last job's end. The same ``Worker`` drains on the memory broker too (row
  "taskit MemoryBroker"): the worker's own ceiling, with no store beneath it.
* **Enqueue-to-start latency**: an idle consumer in another process (taskit: a ``Worker`` of
  concurrency 1; Huey: ``Consumer``, workers=1, its defaults), this process enqueueing one job at
  a time after a 1 s idle window, waiting for each to start, then 2-12 ms more; p50 and p99.

``synchronous``: ``SqliteBroker`` runs at its default, ``synchronous=NORMAL`` (WAL: a commit is
safe from a crash of the process, not from power loss until the next checkpoint), and with
``?synchronous=full`` (an fsync per commit). Huey runs at its default (``SqliteHuey`` leaves
SQLite's, FULL here) and with ``synchronous=NORMAL`` (``benchmarks/_huey_procs.py``). Ratios:
each as it ships (taskit NORMAL / Huey FULL), and like for like (NORMAL / NORMAL, FULL / FULL).
Databases live in ``benchmarks/.sqlite-tmp/`` (on the disk, not a tmpfs). Median of ``--runs``
runs; the rows of one figure run back to back within a run, in turn (reversed every other run),
and each ratio is the median of the runs' own ratios. Writes
``benchmarks/results/sqlite-<date>[-quick][-TAG].md`` and ``.json``.

    .venv/bin/python -m benchmarks.sqlite [--runs 3] [--jobs 5000] [--probes 200] [--quick]
        [--tag T]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing as mp
import random
import shutil
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from benchmarks._huey_procs import huey_app, huey_waiter
from benchmarks._machine import machine_line, package_versions
from taskit import App, Settings
from taskit.job import Outcome, OutcomeKind

RESULTS = Path(__file__).parent / "results"
SCRATCH = Path(__file__).parent / ".sqlite-tmp"
WARMUP = 10
HUEYS = {"huey (FULL, its default)": "default", "huey (NORMAL)": "NORMAL"}


def _fresh() -> Path:
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    return SCRATCH / "jobs.db"


def _taskit_app(
    db: Path,
    ran: Callable[[int, float], None] | None = None,
    memory: bool = False,
    sync: str = "normal",
    body: str = "def",
) -> tuple[App, Any]:
    """The App and its one task ``probe(k, t0)``: a ``def`` (run on a handler thread, as Huey
    runs its task) or, ``body="async"``, an ``async def`` (run on the event loop)."""
    url = "memory://" if memory else f"sqlite:///{db}?synchronous={sync}"
    app = App(url, settings=Settings(result_ttl=60.0))

    def probe(k: int, t0: float) -> None:
        if ran is not None:
            ran(k, t0)

    async def aprobe(k: int, t0: float) -> None:
        probe(k, t0)

    return app, app.task(name="probe", max_retries=0)(aprobe if body == "async" else probe)


# -- taskit ------------------------------------------------------------------------------------
async def _taskit_enqueue(jobs: int, batch: int, sync: str) -> float:
    db = _fresh()
    app, probe = _taskit_app(db, sync=sync)
    await app.stats()  # the file and schema, outside the timing
    began = time.perf_counter()
    if batch == 1:
        for k in range(jobs):
            await probe.enqueue(k, 0.0)
    else:
        for first in range(0, jobs, batch):
            await app.enqueue_many([probe.prepare(k, 0.0) for k in range(first, first + batch)])
    rate = jobs / (time.perf_counter() - began)
    await app.close()
    return rate


def _taskit_enqueue_sync(jobs: int, sync: str) -> float:
    db = _fresh()
    app, probe = _taskit_app(db, sync=sync)
    anyio.run(app.stats)  # the file and schema, outside the timing
    began = time.perf_counter()
    for k in range(jobs):
        probe.enqueue_sync(k, 0.0)
    rate = jobs / (time.perf_counter() - began)
    anyio.run(app.close)
    return rate


async def _taskit_drain(
    jobs: int,
    concurrency: int | None,
    sync: str = "normal",
    memory: bool = False,
    prefetch: int = 0,
    body: str = "def",
) -> float:
    """``concurrency`` None: the broker alone (reserve 10, settle 10). ``memory``: on the
    memory broker (the worker's own ceiling). ``prefetch``: the worker's (``Worker``)."""
    db = _fresh()
    ends: list[float] = []
    app, probe = _taskit_app(db, lambda k, t0: ends.append(time.perf_counter()), memory, sync, body)
    for first in range(0, jobs, 500):
        await app.enqueue_many([probe.prepare(k, 0.0) for k in range(first, first + 500)])
    began = time.perf_counter()
    if concurrency is None:
        done = 0
        while done < jobs:
            leases = await app.broker.reserve(["default"], count=10, lease=30.0, timeout=0)
            outcomes = [Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.COMPLETE)
                        for held in leases]  # fmt: skip
            assert all(await app.broker.settle(outcomes))
            done += len(leases)
        last = time.perf_counter()
    else:
        await app.worker(concurrency=concurrency, prefetch=prefetch).run(burst=True)
        assert len(ends) == jobs, len(ends)
        last = ends[-1]
    await app.close()
    return jobs / (last - began)


def _taskit_waiter(
    db: str, sync: str, ready: Event, stop: Event, acks: Connection, out: Queue[Any]
) -> None:
    latencies: list[float] = []

    def ran(k: int, t0: float) -> None:
        latencies.append(time.monotonic() - t0)
        acks.send(None)

    app, _ = _taskit_app(Path(db), ran, sync=sync)

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(app.worker(concurrency=1).run)
            await anyio.sleep(0.5)  # the worker's first, empty reserve is waiting
            ready.set()
            await anyio.to_thread.run_sync(stop.wait)
            tg.cancel_scope.cancel()
        await app.close()

    anyio.run(serve)
    out.put({"latencies": latencies})


def _latency(which: str, probes: int) -> dict[str, float]:
    db = _fresh()
    ctx = mp.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    receive, send = ctx.Pipe(duplex=False)
    if which in TASKITS:
        sync = TASKITS[which]
        app, probe = _taskit_app(db, sync=sync)
        anyio.run(app.stats)
        proc = ctx.Process(target=_taskit_waiter, args=(str(db), sync, ready, stop, send, out))

        def enqueue(k: int) -> None:
            app.broker.enqueue_blocking([probe.prepare(k, time.monotonic())])
    else:
        _, hprobe = huey_app(str(db), HUEYS[which])
        proc = ctx.Process(target=huey_waiter, args=(str(db), HUEYS[which], ready, stop, send, out))

        def enqueue(k: int) -> None:
            hprobe(k, time.monotonic())

    proc.start()
    ready.wait(timeout=60)
    time.sleep(1.0)  # idle: the consumer has settled into its wait
    for k in range(WARMUP + probes):
        enqueue(k)
        receive.recv()
        time.sleep(random.uniform(0.002, 0.012))
    stop.set()
    got = out.get(timeout=60)
    proc.join(timeout=60)
    lat = sorted(got["latencies"][WARMUP:])
    return {"p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}


# -- Huey --------------------------------------------------------------------------------------
def _huey_enqueue(jobs: int, sync: str) -> float:
    db = _fresh()
    _, probe = huey_app(str(db), sync)
    probe(-1, 0.0)  # the file and table, outside the timing
    began = time.perf_counter()
    for k in range(jobs):
        probe(k, 0.0)
    return jobs / (time.perf_counter() - began)


def _huey_drain(jobs: int, sync: str, workers: int) -> float:
    from huey.consumer import Consumer

    db = _fresh()
    ends: list[float] = []
    all_ran = threading.Event()

    def ran(k: int, t0: float) -> None:
        ends.append(time.perf_counter())
        if len(ends) == jobs:
            all_ran.set()

    huey, probe = huey_app(str(db), sync, ran)
    for k in range(jobs):
        probe(k, 0.0)
    consumer = Consumer(huey, workers=workers)
    began = time.perf_counter()
    consumer.start()
    all_ran.wait(timeout=600)
    consumer.stop(graceful=True)
    assert len(ends) == jobs, len(ends)
    return jobs / (ends[-1] - began)


# -- the run -----------------------------------------------------------------------------------
Measure = tuple[str, Callable[[], dict[str, float]]]  # a row's label, and what it measures
MEMORY = "taskit MemoryBroker (the worker alone)"


def _figure(key: str, fn: Callable[..., Any], *args: Any) -> Callable[[], dict[str, float]]:
    """A measurement of one figure: ``fn(*args)`` (a coroutine function: run on anyio)."""

    def measure() -> dict[str, float]:
        value = anyio.run(fn, *args) if asyncio.iscoroutinefunction(fn) else fn(*args)
        return {key: float(value)}

    return measure


def _huey_enqueues(jobs: int, sync: str) -> dict[str, float]:
    enqueued = _huey_enqueue(jobs, sync)
    return {"enqueue_per_s": enqueued, "enqueue_sync_per_s": enqueued}  # Huey's one: a sync call


def _groups(jobs: int, probes: int) -> list[list[Measure]]:
    """Every measurement of a run, grouped by figure: the rows of one figure run back to back
    (a burst of load on a shared machine then moves them alike, not one side of a ratio)."""
    drains: list[list[Measure]] = []
    for c in (1, 10):
        key = f"drain_c{c}_per_s"
        group = [(label, _figure(key, _taskit_drain, jobs, c, sync))
                 for label, sync in TASKITS.items()]  # fmt: skip
        group += [
            (PREFETCHED, _figure(key, _taskit_drain, jobs, c, "normal", False, PREFETCH)),
            (ASYNC, _figure(key, _taskit_drain, jobs, c, "normal", False, 0, "async")),
            (ASYNC_PREFETCHED,
             _figure(key, _taskit_drain, jobs, c, "normal", False, PREFETCH, "async")),
            (MEMORY, _figure(key, _taskit_drain, jobs, c, "normal", True)),
        ]  # fmt: skip
        group += [(label, _figure(key, _huey_drain, jobs, sync, c))
                  for label, sync in HUEYS.items()]  # fmt: skip
        drains.append(group)
    return [
        [(label, _figure("enqueue_per_s", _taskit_enqueue, jobs, 1, sync))
         for label, sync in TASKITS.items()]
        + [(label, functools.partial(_huey_enqueues, jobs, sync))
           for label, sync in HUEYS.items()],
        [(label, _figure("enqueue_sync_per_s", _taskit_enqueue_sync, jobs, sync))
         for label, sync in TASKITS.items()],
        [(label, _figure("batch_per_s", _taskit_enqueue, jobs, 100, sync))
         for label, sync in TASKITS.items()],
        *drains,
        [(label, _figure("drain_broker_per_s", _taskit_drain, jobs, None, sync))
         for label, sync in TASKITS.items()],
        [(label, functools.partial(_latency, label, probes)) for label in (*TASKITS, *HUEYS)],
    ]  # fmt: skip


def one_run(jobs: int, probes: int, n: int = 0) -> dict[str, dict[str, float]]:
    """One run: each group's rows back to back, in turn (reversed in every other run)."""
    order = [*TASKITS, PREFETCHED, ASYNC, ASYNC_PREFETCHED, MEMORY, *HUEYS]
    rows: dict[str, dict[str, float]] = {label: {} for label in order}
    for group in _groups(jobs, probes):
        for label, measure in group if n % 2 == 0 else reversed(group):
            rows[label].update(measure())
    shutil.rmtree(SCRATCH, ignore_errors=True)
    return rows


COLUMNS = (
    ("enqueue_per_s", "enqueue/s (1 a call)", ",.0f"),
    ("enqueue_sync_per_s", "enqueue/s (sync caller: enqueue_sync / Huey's call)", ",.0f"),
    ("batch_per_s", "enqueue/s (batches of 100)", ",.0f"),
    ("drain_c1_per_s", "drain/s (1 worker thread / concurrency 1)", ",.0f"),
    ("drain_c10_per_s", "drain/s (10 worker threads / concurrency 10)", ",.0f"),
    ("drain_broker_per_s", "drain/s (broker alone: reserve 10, settle 10)", ",.0f"),
    ("p50_ms", "enqueue-to-start p50 ms", ".2f"),
    ("p99_ms", "p99 ms", ".2f"),
)


TASKIT = "taskit SqliteBroker (NORMAL, its default)"
TASKIT_FULL = "taskit SqliteBroker (FULL: ?synchronous=full)"
TASKITS = {TASKIT: "normal", TASKIT_FULL: "full"}
#: The worker's prefetch in the row below taskit's (which runs the default, 0).
PREFETCH = 4
PREFETCHED = f"taskit SqliteBroker (NORMAL), --prefetch {PREFETCH}"
#: The same drains with an ``async def`` job (run on the event loop, no handler thread).
ASYNC = "taskit SqliteBroker (NORMAL), async def job"
ASYNC_PREFETCHED = f"{ASYNC}, --prefetch {PREFETCH}"
HUEY_FULL, HUEY_NORMAL = HUEYS
#: The ratios shown: each as it ships, then at equal durability (NORMAL, then FULL).
PAIRS = ((TASKIT, HUEY_FULL, "as each ships"), (TASKIT, HUEY_NORMAL, "both NORMAL"),
         (TASKIT_FULL, HUEY_FULL, "both FULL"), (PREFETCHED, HUEY_FULL, "as each ships"),
         (PREFETCHED, HUEY_NORMAL, "both NORMAL"), (ASYNC, HUEY_FULL, "as each ships"),
         (ASYNC, HUEY_NORMAL, "both NORMAL"), (ASYNC_PREFETCHED, HUEY_FULL, "as each ships"),
         (ASYNC_PREFETCHED, HUEY_NORMAL, "both NORMAL"))  # fmt: skip
# The broker alone is set against Huey's one-thread drain (Huey has no broker-alone figure).
_HUEY_KEY = {"drain_broker_per_s": "drain_c1_per_s"}


def table(runs: list[dict[str, dict[str, float]]]) -> str:
    """The median of each figure over ``runs``, then taskit's ratio to each Huey (the median
    of the ratios within a run)."""
    lines = ["| | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]  # fmt: skip
    for label in runs[0]:
        cells = []
        for key, _, fmt in COLUMNS:
            values = [run[label][key] for run in runs if key in run[label]]
            cells.append(f"{statistics.median(values):{fmt}}" if values else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for ours, huey, what in PAIRS:
        cells = []
        for key, _, _ in COLUMNS:
            theirs = _HUEY_KEY.get(key, key)
            ratios = [
                run[ours][key] / run[huey][theirs]
                for run in runs
                if key.endswith("per_s") and key in run.get(ours, {}) and theirs in run[huey]
            ]
            cells.append(f"{statistics.median(ratios):.2f}" if ratios else "")
        lines.append(f"| {ours} / {huey} ({what}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="1 run, 1,000 jobs, 50 probes")
    parser.add_argument("--tag", default="", help="results file suffix (keeps a day's others)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.jobs, args.probes = 1, 1000, 50
    runs = []
    for n in range(args.runs):
        runs.append(one_run(args.jobs, args.probes, n))
        print(f"run {n + 1}:\n{table(runs[-1:])}", flush=True)
    stamp = datetime.now(UTC)
    name = f"sqlite-{stamp:%Y-%m-%d}{'-quick' if args.quick else ''}"
    name += f"-{args.tag}" if args.tag else ""
    versions = package_versions(("huey", "anyio"))
    head = (
        f"# SQLite broker vs Huey's SqliteHuey ({stamp:%Y-%m-%d %H:%M} UTC)\n\n"
        f"`python -m benchmarks.sqlite --runs {args.runs} --jobs {args.jobs} --probes "
        f"{args.probes}`; median of {args.runs} run(s); {machine_line()}; SQLite "
        f"{sqlite3.sqlite_version}; {versions}. Each phase on a fresh file in "
        "benchmarks/.sqlite-tmp/ (disk). n/a: Huey has no batch enqueue; its "
        "concurrency is its consumer's worker threads (1 or 10).\n\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(head + table(runs) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"runs": runs, "args": vars(args)}, indent=1))
    print(f"wrote {RESULTS / name}.md")


if __name__ == "__main__":
    main()
