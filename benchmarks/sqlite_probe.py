"""The numbers before a SQLite broker is built (issue 18): a native-SQL job table beside Huey's
SQLite storage, and ways to wake an idle reserve in another process.

* **Throughput.** The design of ``benchmarks/_sqlite_jobs.py`` (one ``jobs`` table, WAL,
  ``synchronous=NORMAL``, each operation one ``BEGIN IMMEDIATE`` transaction), driven by raw SQL
  from separate processes (``_sqlite_procs.py``): single enqueues, batches of 100, drains
  (reserve of up to 1 or 10 jobs, then one settle per job, marking it done or moving it), with
  1, 2 and 4 processes at once, producers and consumers together too. Every job is counted: the
  ids the consumers settled must be exactly the ids enqueued (none lost, none twice).
  Beside it, in the same run and with as many jobs, Huey's ``SqliteHuey`` as its docs drive it
  (``_huey_procs.py``: the task called to enqueue, ``Consumer`` with one worker thread to run),
  at its defaults (``synchronous`` FULL: an fsync per commit) and with ``synchronous=NORMAL``;
  two rows of the design at FULL as well. Rates: enqueues ``n / span`` of the producers;
  drains ``(n - 1) / span`` from the first job's end to the last one's in any process; both at
  once ``n`` from the first enqueue to the last settle. µs per call: each call's wall time
  (lock waits included), p50 and p99.
* **Wake-up.** An idle worker process reserving one job at a time, woken by each method of
  ``_sqlite_wake.py`` (50 ms poll, ``PRAGMA data_version`` every 1 and 5 ms, a UNIX datagram
  socket per waiter, a FIFO), and Huey's consumer at its defaults; another process (the runner)
  enqueues one job at a time after a 1 s idle window (the waiter's CPU over it is the idle CPU),
  waiting for each to start and 2-12 ms more; enqueue-to-start p50 and p99.

Median of ``--runs`` (3) runs, ratios within a run. The databases live in
``benchmarks/.sqlite-tmp/`` (on the disk, not a tmpfs; removed after each phase). Writes
``benchmarks/results/sqlite-probe-<date>[-quick].md`` and ``.json``.

    .venv/bin/python -m benchmarks.sqlite_probe [--runs 3] [--jobs 10000] [--probes 200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

from benchmarks._huey_procs import huey_app, huey_consumer, huey_producer, huey_waiter
from benchmarks._machine import machine_line, package_versions
from benchmarks._sqlite_jobs import JobTable
from benchmarks._sqlite_procs import latency_driver, spec, sql_consumer, sql_producer, sql_waiter
from benchmarks._sqlite_wake import METHODS

RESULTS = Path(__file__).parent / "results"
SCRATCH = Path(__file__).parent / ".sqlite-tmp"
HUEYS = ("huey-NORMAL", "huey-default")
WARMUP = 10


@dataclass(frozen=True)
class Phase:
    key: str
    label: str
    producers: int = 0
    consumers: int = 0
    batch: int = 1  # jobs per enqueue call
    limit: int = 10  # jobs per reserve
    move: bool = False  # settle moves the row to `done`
    sync: str = "NORMAL"
    lock: str = "timeout"  # how a transaction waits for the write lock (_sqlite_jobs)
    huey: str = ""  # the Huey phase it is compared with


SQL_PHASES = (
    Phase("enqueue-1", "enqueue, 1 producer", 1, huey="enqueue-1"),
    Phase("batch-1", "enqueue batches of 100, 1 producer", 1, batch=100, huey="enqueue-1"),
    Phase("drain-1-r1", "drain, 1 consumer, reserve 1", 0, 1, limit=1, huey="drain-1"),
    Phase("drain-1", "drain, 1 consumer, reserve 10", 0, 1, huey="drain-1"),
    Phase("drain-1-move", "drain, 1 consumer, reserve 10, settle moves", 0, 1, move=True,
          huey="drain-1"),
    Phase("enqueue-2", "enqueue, 2 producers", 2, huey="enqueue-2"),
    Phase("enqueue-4", "enqueue, 4 producers", 4, huey="enqueue-4"),
    Phase("drain-2", "drain, 2 consumers, reserve 10", 0, 2, huey="drain-2"),
    Phase("drain-4", "drain, 4 consumers, reserve 10", 0, 4, huey="drain-4"),
    Phase("both-1+1", "1 producer + 1 consumer at once", 1, 1, huey="both-1+1"),
    Phase("both-2+2", "2 producers + 2 consumers at once", 2, 2, huey="both-2+2"),
    Phase("enqueue-4-retry", "enqueue, 4 producers, lock retried", 4, lock="retry",
          huey="enqueue-4"),
    Phase("drain-4-retry", "drain, 4 consumers, reserve 10, lock retried", 0, 4, lock="retry",
          huey="drain-4"),
    Phase("both-1+1-retry", "1 producer + 1 consumer at once, lock retried", 1, 1,
          lock="retry", huey="both-1+1"),
    Phase("both-2+2-retry", "2 producers + 2 consumers at once, lock retried", 2, 2,
          lock="retry", huey="both-2+2"),
    Phase("enqueue-1-full", "enqueue, 1 producer, synchronous=FULL", 1, sync="FULL",
          huey="enqueue-1"),
    Phase("drain-1-r1-full", "drain, 1 consumer, reserve 1, synchronous=FULL", 0, 1, limit=1,
          sync="FULL", huey="drain-1"),
)  # fmt: skip
HUEY_PHASES = (
    Phase("enqueue-1", "", 1),
    Phase("enqueue-2", "", 2),
    Phase("enqueue-4", "", 4),
    Phase("drain-1", "", 0, 1),
    Phase("drain-2", "", 0, 2),
    Phase("drain-4", "", 0, 4),
    Phase("both-1+1", "", 1, 1),
    Phase("both-2+2", "", 2, 2),
)


def _fresh(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".fifo"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    shutil.rmtree(db.with_name(db.name + ".wake"), ignore_errors=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _us(values: list[float]) -> dict[str, float]:
    return {"p50": _pct(values, 0.5) * 1e6, "p99": _pct(values, 0.99) * 1e6}


def _prefill(system: str, db: Path, phase: Phase, n: int) -> list[Any]:
    if system == "sql":
        table = JobTable(str(db), sync=phase.sync, lock=phase.lock)
        table.create()
        ids = [uuid.uuid4().hex for _ in range(n)]
        for first in range(0, n, 1000):
            table.enqueue_many([(i, spec()) for i in ids[first : first + 1000]])
        table.close()
        return ids
    huey, probe = huey_app(str(db), system.split("-")[1])
    if phase.producers:
        return []
    for k in range(n):
        probe(k, 0.0)
    huey.storage.close()
    return list(range(n))


def run_phase(ctx: SpawnContext, system: str, phase: Phase, n: int) -> dict[str, Any]:
    """One phase on a fresh database: the processes started together, every job counted."""
    db = SCRATCH / f"{system}-{phase.key}.db"
    _fresh(db)
    sync = phase.sync if system == "sql" else system.split("-")[1]
    table_opts = {"sync": sync, "lock": phase.lock}
    expected = _prefill(system, db, phase, 0 if phase.producers else n)
    out = ctx.Queue()
    start = ctx.Barrier(phase.producers + phase.consumers + 1)
    producers_done = ctx.Event() if phase.producers and phase.consumers else None
    counter = ctx.Value("i", 0)
    procs = []
    for i in range(phase.producers):
        count = n // phase.producers + (n % phase.producers if i == 0 else 0)
        first = i * (n // phase.producers) + (0 if i == 0 else n % phase.producers)
        procs.append(ctx.Process(target=sql_producer, args=(str(db), table_opts, count, phase.batch,
                                                            start, out))
                     if system == "sql" else
                     ctx.Process(target=huey_producer, args=(str(db), sync, first, count, start,
                                                             out)))  # fmt: skip
    for _ in range(phase.consumers):
        procs.append(ctx.Process(target=sql_consumer, args=(str(db), table_opts, phase.limit,
                                                            phase.move, producers_done, start, out))
                     if system == "sql" else
                     ctx.Process(target=huey_consumer, args=(str(db), sync, n, counter, start,
                                                             out)))  # fmt: skip
    for p in procs:
        p.start()
    start.wait()
    got: list[dict[str, Any]] = []
    while len(got) < len(procs):
        got.append(out.get(timeout=300))
        if producers_done is not None and sum(g["role"] == "producer" for g in got) == \
                phase.producers:  # fmt: skip
            producers_done.set()
    for p in procs:
        p.join(timeout=60)
    prods = [g for g in got if g["role"] == "producer"]
    cons = [g for g in got if g["role"] == "consumer"]
    busy = [g for g in cons if g["ids"]]  # a consumer that got no job has no span
    for g in prods:
        expected.extend(g["ids"])
    if cons:
        ran = [i for g in cons for i in g["ids"]]
        lost, twice = len(set(expected) - set(ran)), len(ran) - len(set(ran))
        extra = len(set(ran) - set(expected))
    else:  # enqueue only: every job in the table once
        conn = sqlite3.connect(db)
        stored = conn.execute("SELECT count(*) FROM jobs" if system == "sql" else
                              "SELECT count(*) FROM task").fetchone()[0]  # fmt: skip
        conn.close()
        lost, twice, extra = len(expected) - stored, len(expected) - len(set(expected)), 0
    check = "ok"
    if (len(expected), lost, twice, extra) != (n, 0, 0, 0):
        check = (
            f"FAILED: {len(expected)} of {n} enqueued, {lost} lost, {twice} twice, {extra} unknown"
        )
    if cons and not prods:
        span = max(g["last_end"] for g in busy) - min(g["first_end"] for g in busy)
        rate = (n - 1) / span
    elif cons:
        span = max(g["last_end"] for g in busy) - min(g["began"] for g in prods)
        rate = n / span
    else:
        span = max(g["ended"] for g in prods) - min(g["began"] for g in prods)
        rate = n / span
    _fresh(db)
    result: dict[str, Any] = {"rate": rate, "seconds": span, "check": check}
    if prods:
        result["enqueue_us"] = _us([c for g in prods for c in g["calls"]])
    if cons and system == "sql":
        result["reserve_us"] = _us([c for g in cons for c in g["reserves"]])
        result["settle_us"] = _us([c for g in cons for c in g["settles"]])
        result["idle_reserves"] = sum(g["idle_reserves"] for g in cons)
        result["refused_settles"] = sum(g["refused_settles"] for g in cons)
    return result


def run_latency(ctx: SpawnContext, method: str, probes: int) -> dict[str, Any]:
    """Enqueue-to-start latency of one wake-up method (or Huey's consumer, ``huey``)."""
    db = SCRATCH / f"latency-{method}.db"
    _fresh(db)
    out = ctx.Queue()
    ready, stop = ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    if method == "huey":
        _, probe = huey_app(str(db), "default")
        proc = ctx.Process(target=huey_waiter, args=(str(db), "default", ready, stop, send, out))
    else:
        JobTable(str(db)).create()
        proc = ctx.Process(target=sql_waiter, args=(str(db), method, ready, stop, send, out))
    proc.start()
    ready.wait(timeout=60)
    if method == "huey":
        time.sleep(1.0)
        for k in range(WARMUP + probes):
            probe(k, time.monotonic())
            receive.recv()
            time.sleep(random.uniform(0.002, 0.012))
        stop.set()
        notifies: list[float] = []
    else:  # the producer's side is a no-op for polls
        notifies = latency_driver(str(db), method, probes, WARMUP, receive, stop)
        if method not in ("socket", "fifo"):
            notifies = []
    got = out.get(timeout=60)
    proc.join(timeout=60)
    _fresh(db)
    lat = got["latencies"][WARMUP:]
    return {"p50_ms": _pct(lat, 0.5) * 1e3, "p99_ms": _pct(lat, 0.99) * 1e3,
            "idle_cpu_pct": got["idle_cpu"] * 100,
            "notify_us": statistics.mean(notifies) * 1e6 if notifies else 0.0,
            "probes": len(lat)}  # fmt: skip


def _med(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}}"


def _rng(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def report(runs: list[dict[str, Any]], opts: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    when = datetime.now(UTC)
    versions = package_versions(("taskit", "huey"))
    versions["sqlite"] = sqlite3.sqlite_version
    title = "quick check, " if opts.quick else ""
    lines = [
        f"# SQLite: the probe for issue 18 ({title}{when:%Y-%m-%d %H:%M} UTC)",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"`python -m benchmarks.sqlite_probe {' '.join(sys.argv[1:])}`: {opts.jobs:,} jobs a "
        f"phase, {opts.probes} latency probes a method; median [range] of {len(runs)} runs, "
        "ratios within a run (each Huey phase run just before the SQL phases compared with it). "
        f"Load average before {opts.load_before[0]:.2f}, after {opts.load_after[0]:.2f} (the "
        "machine was shared). Databases on ext4 (the machine's disk). SQL: the native-SQL "
        "design at `synchronous=NORMAL` unless the row says FULL. Huey NORMAL: `SqliteHuey` "
        "with `synchronous=NORMAL` (like for like); Huey default: its defaults (FULL). "
        "Every phase counted every job (column 'count').",
        "",
        "| phase | SQL jobs/s | µs/call p50 / p99 | Huey NORMAL jobs/s | SQL/Huey NORMAL "
        "| Huey default jobs/s | SQL/Huey default | count |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for phase in SQL_PHASES:
        got = [r["sql"][phase.key] for r in runs]
        hn = [r["huey-NORMAL"][phase.huey] for r in runs]
        hd = [r["huey-default"][phase.huey] for r in runs]
        calls = []
        for name in ("enqueue_us", "reserve_us", "settle_us"):
            if name in got[0]:
                calls.append(f"{name.split('_')[0]} {_med([g[name]['p50'] for g in got], '.0f')}"
                             f" / {_med([g[name]['p99'] for g in got], '.0f')}")  # fmt: skip
        same = "" if phase.huey == phase.key else f" (vs its {phase.huey})"
        checks = {g["check"] for g in got}
        lines.append(
            f"| {phase.label} | {_rng([g['rate'] for g in got], ',.0f')} | {'; '.join(calls)} "
            f"| {_med([h['rate'] for h in hn], ',.0f')}{same} "
            f"| {_med([g['rate'] / h['rate'] for g, h in zip(got, hn, strict=True)], '.2f')} "
            f"| {_med([h['rate'] for h in hd], ',.0f')} "
            f"| {_med([g['rate'] / h['rate'] for g, h in zip(got, hd, strict=True)], '.2f')} "
            f"| {'; '.join(sorted(checks))} |"
        )
    lines += ["", "Huey's own phases (µs per enqueue call p50 / p99; count):", "",
              "| phase | Huey NORMAL jobs/s | enqueue µs | Huey default jobs/s | enqueue µs "
              "| count |", "|---|---|---|---|---|---|"]  # fmt: skip
    for phase in HUEY_PHASES:
        cells = []
        for system in HUEYS:
            got = [r[system][phase.key] for r in runs]
            us = (f"{_med([g['enqueue_us']['p50'] for g in got], '.0f')} / "
                  f"{_med([g['enqueue_us']['p99'] for g in got], '.0f')}"
                  if "enqueue_us" in got[0] else "-")  # fmt: skip
            cells += [_rng([g["rate"] for g in got], ",.0f"), us]
        checks = {r[s][phase.key]["check"] for r in runs for s in HUEYS}
        lines.append(f"| {phase.key} | {' | '.join(cells)} | {'; '.join(sorted(checks))} |")
    lines += ["", "Enqueue-to-start latency of an idle worker in another process (after 1 s "
              "idle; the producer's notify call's wall time; the waiter's CPU while idle):", "",
              "| wake-up | p50 ms | p99 ms | p50 vs 50 ms poll | idle CPU % | notify µs |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for method in (*METHODS, "huey"):
        got = [r["latency"][method] for r in runs]
        base = [r["latency"]["poll-50ms"] for r in runs]
        name = "Huey consumer (defaults: poll 0.1 s, x1.15 to 10 s)" if method == "huey" else method
        lines.append(
            f"| {name} | {_rng([g['p50_ms'] for g in got], '.2f')} "
            f"| {_rng([g['p99_ms'] for g in got], '.2f')} "
            f"| {_med([g['p50_ms'] / b['p50_ms'] for g, b in zip(got, base, strict=True)], '.3f')} "
            f"| {_med([g['idle_cpu_pct'] for g in got], '.2f')} "
            f"| {_med([g['notify_us'] for g in got], '.1f') if got[0]['notify_us'] else '-'} |"
        )
    data = {"date": when.isoformat(), "machine": machine_line(), "versions": versions,
            "args": {**vars(opts), "command": " ".join(sys.argv[1:])}, "runs": runs}  # fmt: skip
    return "\n".join(lines) + "\n", data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs (3; quick 1)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs a phase (10,000; quick 2,000)")
    parser.add_argument("--probes", type=int, default=None, help="latency probes (200; quick 50)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run: a check")
    opts = parser.parse_args()
    opts.runs = opts.runs or (1 if opts.quick else 3)
    opts.jobs = opts.jobs or (2000 if opts.quick else 10_000)
    opts.probes = opts.probes or (50 if opts.quick else 200)
    ctx = mp.get_context("spawn")
    SCRATCH.mkdir(exist_ok=True)
    runs: list[dict[str, Any]] = []
    failed = False
    opts.load_before = os.getloadavg()
    for i in range(opts.runs):
        run: dict[str, Any] = {"sql": {}, "latency": {}, **{s: {} for s in HUEYS}}
        # each Huey phase, then at once the SQL phases compared with it: a ratio's two sides
        # close together in time, so that they share the machine's background load
        order: list[tuple[str, Phase]] = []
        for h in HUEY_PHASES:
            order += [(s, h) for s in HUEYS] + [("sql", p) for p in SQL_PHASES if p.huey == h.key]
        for system, phase in order:
            got = run[system][phase.key] = run_phase(ctx, system, phase, opts.jobs)
            failed |= got["check"] != "ok"
            print(f"run {i + 1}: {system} {phase.key}: {got['rate']:,.0f} jobs/s, "
                  f"{got['check']}", flush=True)  # fmt: skip
        for method in (*METHODS, "huey"):
            got = run["latency"][method] = run_latency(ctx, method, opts.probes)
            print(
                f"run {i + 1}: latency {method}: p50 {got['p50_ms']:.2f} ms, "
                f"p99 {got['p99_ms']:.2f} ms, idle CPU {got['idle_cpu_pct']:.2f}%",
                flush=True,
            )
        runs.append(run)
    opts.load_after = os.getloadavg()
    text, data = report(runs, opts)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"sqlite-probe-{datetime.now(UTC):%Y-%m-%d}{'-quick' if opts.quick else ''}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {stem}.md and .json")
    if failed:
        sys.exit("a phase lost or repeated jobs: see the count column")


if __name__ == "__main__":
    main()
