"""Issue 18's other design, measured: the Redis broker's Lua scripts run unchanged in-process
(lupa, Lua 5.1) over Redis's data types emulated in SQLite (``_redis_sqlite.py``), each script
call one ``BEGIN IMMEDIATE`` transaction (WAL, ``synchronous=NORMAL``). A probe, not a broker.

* **Self-check first.** A scenario of enqueues (single, a batch with a priority job and a delayed
  one, an id enqueued again), reserves and settles of every common kind (complete, fail, retry at
  once and delayed, dead letter) runs with every command the scripts issue recorded with its
  reply; the same commands are then replayed on fakeredis and every reply must be the same (TIME
  excepted). The figures are only written when none differs.
* **SQL statements per call** (``BEGIN`` and ``COMMIT`` included; an ``executemany`` counts
  each row) and the commands each script issued, for: an enqueue of 1 job, of 100, a reserve of
  10 and a settle of 1 and of 10 completions.
* **Throughput**, as ``sqlite_probe``'s phases (its code reused: ``_sqlite_jobs``/``_sqlite_procs``
  for the native-SQL design, ``_huey_procs`` for Huey at ``synchronous=NORMAL`` and at its
  defaults): single enqueues, batches of 100, a drain (reserve 10, then a settle per job; and one
  settle of the 10), 1 producer + 1 consumer at once. Every job counted (the ids settled must be
  the ids enqueued; enqueue phases: the jobs hash holds them all). Rates as in ``sqlite_probe``.

Median of ``--runs`` (3) runs; ratios within a run (each Huey phase, then the SQL and Lua phases
compared with it, run back to back). Writes ``benchmarks/results/sqlite-lua-probe-<date>[-quick]``
``.md`` and ``.json``.

    .venv/bin/python -m benchmarks.sqlite_lua_probe [--runs 3] [--jobs 10000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sqlite3
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import fakeredis
import lupa
from redis.exceptions import ResponseError

from benchmarks._lua_sqlite_procs import LuaJobs, lua_consumer, lua_producer, make_job
from benchmarks._machine import machine_line, package_versions
from benchmarks._redis_sqlite import COMMANDS, RedisError
from benchmarks.sqlite_probe import HUEY_PHASES, SCRATCH, SQL_PHASES, _fresh, _us, run_phase
from taskit.job import JobResult, Outcome, OutcomeKind

RESULTS = Path(__file__).parent / "results"
HUEYS = ("huey-NORMAL", "huey-default")


@dataclass(frozen=True)
class Phase:
    key: str
    label: str
    producers: int = 0
    consumers: int = 0
    batch: int = 1  # jobs per enqueue call
    limit: int = 10  # jobs per reserve
    settle_batch: bool = False  # one settle call for a reserve's jobs
    compare: str = ""  # the sqlite_probe phase (SQL and Huey) it is compared with


LUA_PHASES = (
    Phase("enqueue-1", "enqueue, 1 producer", 1, compare="enqueue-1"),
    Phase("batch-1", "enqueue batches of 100, 1 producer", 1, batch=100, compare="batch-1"),
    Phase("drain-1", "drain, 1 consumer, reserve 10", 0, 1, compare="drain-1"),
    Phase("drain-1-sb", "drain, 1 consumer, reserve 10, one settle per 10", 0, 1,
          settle_batch=True, compare="drain-1"),
    Phase("both-1+1", "1 producer + 1 consumer at once", 1, 1, compare="both-1+1"),
)  # fmt: skip
SQL_KEYS = ("enqueue-1", "batch-1", "drain-1", "both-1+1")
HUEY_OF = {p.key: p.huey for p in SQL_PHASES}


# -- the self-check ----------------------------------------------------------------------------
def _same(mine: Any, theirs: Any) -> bool:
    if isinstance(mine, RedisError):
        return isinstance(theirs, ResponseError)
    if hasattr(mine, "text"):  # a status reply
        mine = mine.text
    if isinstance(theirs, str):
        theirs = theirs.encode()
    if isinstance(mine, list) and isinstance(theirs, list):
        return len(mine) == len(theirs) and all(map(_same, mine, theirs))
    return bool(mine == theirs)


def self_check() -> dict[str, Any]:
    """The scenario's commands on the emulation, replayed on fakeredis: the replies compared."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs = LuaJobs(f"{tmp}/check.db")
        jobs.create()
        trace: list[tuple[tuple[bytes, ...], Any]] = []
        jobs.redis.trace = trace
        first = make_job()
        jobs.enqueue([first])
        batch = [make_job() for _ in range(6)] + [make_job(priority=5)]
        jobs.enqueue([*batch, make_job()], delays_ms=[0] * 7 + [3_600_000])
        jobs.enqueue([first])  # kept: an unfinished job of that id
        leases = jobs.reserve(10)
        kinds = [OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.RETRY, OutcomeKind.RETRY,
                 OutcomeKind.DEAD_LETTER, OutcomeKind.COMPLETE]  # fmt: skip
        outcomes = []
        for lease, kind in zip(leases, kinds, strict=False):
            failed = kind in (OutcomeKind.FAIL, OutcomeKind.RETRY, OutcomeKind.DEAD_LETTER)
            delay = 60.0 if kind == OutcomeKind.RETRY and outcomes[-1].kind == kind else 0.0
            result = None if failed else JobResult(success=True, value=1)
            error, etype = ("boom", "ValueError") if failed else (None, None)
            outcomes.append(Outcome(job_id=lease.job.id, token=lease.token, kind=kind,
                                    result=result, error=error, error_type=etype,
                                    delay=delay))  # fmt: skip
        applied = jobs.settle(outcomes[:3]) + jobs.settle(outcomes[3:])
        applied += jobs.settle(outcomes[:1])  # again: answered from the done key's mark
        rest = jobs.reserve(10)  # the job retried at once
        applied += jobs.complete(rest + leases[6:])
        if not all(applied) or len(leases) != 8 or len(rest) != 1:
            raise RuntimeError(f"scenario went wrong: {applied}, {len(leases)}, {len(rest)}")
        jobs.close()
    fake = fakeredis.FakeRedis()
    fake.response_callbacks.clear()  # raw replies, as a script sees them
    diffs = []
    for argv, mine in trace:
        if argv[0] == b"TIME":
            continue
        try:
            theirs: Any = fake.execute_command(*argv)
        except ResponseError as exc:
            theirs = exc
        if not _same(mine, theirs):
            diffs.append(f"{argv!r}: emulation {mine!r}, fakeredis {theirs!r}")
    used = Counter(argv[0].decode() for argv, _ in trace)
    return {"commands": len(trace), "used": dict(sorted(used.items())), "diffs": diffs}


# -- statements per call ---------------------------------------------------------------------
def count_statements() -> dict[str, Any]:
    """SQL statements and commands of one call of each kind, on a queue of 200 jobs."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = LuaJobs(f"{tmp}/count.db")
        jobs.create()
        jobs.enqueue([make_job() for _ in range(100)])
        r = jobs.redis

        def one(name: str, call: Any) -> Any:
            r.commands.clear()
            before = r.statements
            got = call()
            out[name] = {"statements": r.statements - before, "commands": dict(r.commands)}
            return got

        one("enqueue 1", lambda: jobs.enqueue([make_job()]))
        one("enqueue 100", lambda: jobs.enqueue([make_job() for _ in range(100)]))
        leases = one("reserve 10", lambda: jobs.reserve(10))
        one("settle 1", lambda: jobs.complete(leases[:1]))
        more = jobs.reserve(10)
        one("settle 10", lambda: jobs.complete(more))
        jobs.close()
    return out


# -- throughput --------------------------------------------------------------------------------
def run_lua_phase(ctx: SpawnContext, phase: Phase, n: int) -> dict[str, Any]:
    """One phase on a fresh database: the processes started together, every job counted."""
    db = SCRATCH / f"lua-{phase.key}.db"
    _fresh(db)
    jobs = LuaJobs(str(db))
    jobs.create()
    expected: list[str] = []
    if not phase.producers:
        for first in range(0, n, 1000):
            some = [make_job() for _ in range(min(1000, n - first))]
            jobs.enqueue(some)
            expected += [job.id for job in some]
    jobs.close()
    out = ctx.Queue()
    start = ctx.Barrier(phase.producers + phase.consumers + 1)
    producers_done = ctx.Event() if phase.producers and phase.consumers else None
    procs = [
        ctx.Process(target=lua_producer, args=(str(db), "NORMAL", n, phase.batch, start, out))
        for _ in range(phase.producers)
    ]
    drain = (str(db), "NORMAL", phase.limit, phase.settle_batch, producers_done, start, out)
    procs += [ctx.Process(target=lua_consumer, args=drain) for _ in range(phase.consumers)]
    for p in procs:
        p.start()
    start.wait()
    got: list[dict[str, Any]] = []
    while len(got) < len(procs):
        got.append(out.get(timeout=600))
        if producers_done is not None and any(g["role"] == "producer" for g in got):
            producers_done.set()
    for p in procs:
        p.join(timeout=60)
    prods = [g for g in got if g["role"] == "producer"]
    cons = [g for g in got if g["role"] == "consumer"]
    for g in prods:
        expected.extend(g["ids"])
    if cons:
        ran = [i for g in cons for i in g["ids"]]
        lost, twice = len(set(expected) - set(ran)), len(ran) - len(set(ran))
        extra = len(set(ran) - set(expected))
    else:
        check = LuaJobs(str(db))
        stored = check.stored()
        check.close()
        lost, twice, extra = len(expected) - stored, len(expected) - len(set(expected)), 0
    verdict = "ok"
    if (len(expected), lost, twice, extra) != (n, 0, 0, 0):
        verdict = (
            f"FAILED: {len(expected)} of {n} enqueued, {lost} lost, {twice} twice, {extra} unknown"
        )
    if cons and not prods:
        span = max(g["last_end"] for g in cons) - min(g["first_end"] for g in cons)
        rate = (n - 1) / span
    elif cons:
        span = max(g["last_end"] for g in cons) - min(g["began"] for g in prods)
        rate = n / span
    else:
        span = max(g["ended"] for g in prods) - min(g["began"] for g in prods)
        rate = n / span
    _fresh(db)
    result: dict[str, Any] = {"rate": rate, "seconds": span, "check": verdict}
    if prods:
        result["enqueue_us"] = _us([c for g in prods for c in g["calls"]])
        result["statements_per_job_enqueue"] = sum(g["statements"] for g in prods) / n
    if cons:
        result["reserve_us"] = _us([c for g in cons for c in g["reserves"]])
        result["settle_us"] = _us([c for g in cons for c in g["settles"]])
        result["statements_per_job_drain"] = (
            sum(g["reserve_statements"] + g["settle_statements"] for g in cons) / n
        )
        result["idle_reserves"] = sum(g["idle_reserves"] for g in cons)
        result["refused_settles"] = sum(g["refused_settles"] for g in cons)
    return result


def _med(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}}"


def _rng(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def _calls(got: list[dict[str, Any]]) -> str:
    calls = []
    for name in ("enqueue_us", "reserve_us", "settle_us"):
        if name in got[0]:
            calls.append(f"{name.split('_')[0]} {_med([g[name]['p50'] for g in got], '.0f')} / "
                         f"{_med([g[name]['p99'] for g in got], '.0f')}")  # fmt: skip
    return "; ".join(calls)


def report(
    runs: list[dict[str, Any]], check: dict[str, Any], counts: dict[str, Any],
    opts: argparse.Namespace,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    when = datetime.now(UTC)
    versions = package_versions(("taskit", "huey", "lupa", "fakeredis"))
    versions["sqlite"] = sqlite3.sqlite_version
    versions["lua"] = lupa.lua51.LuaRuntime().lua_implementation
    title = "quick check, " if opts.quick else ""
    lines = [
        f"# SQLite: the Redis broker's Lua scripts over emulated Redis types (issue 18; "
        f"{title}{when:%Y-%m-%d %H:%M} UTC)",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"`python -m benchmarks.sqlite_lua_probe {' '.join(sys.argv[1:])}`: {opts.jobs:,} jobs "
        f"a phase; median [range] of {len(runs)} runs, ratios within a run (each Huey phase, "
        "then the SQL and Lua phases compared with it, back to back). Load average before "
        f"{opts.load_before[0]:.2f}, after {opts.load_after[0]:.2f}. Databases on the machine's "
        "disk. Lua: the scripts enqueue, reserve and settle as `RedisBroker` calls them, each "
        "call one `BEGIN IMMEDIATE` transaction, WAL, `synchronous=NORMAL`. SQL: "
        "`sqlite_probe`'s native-SQL design (same settings). Huey NORMAL: `SqliteHuey` with "
        "`synchronous=NORMAL`; Huey default: its defaults (FULL). Every phase counted every job "
        "(column 'count').",
        "",
        f"Self-check: {check['commands']} commands of the scripts replayed on fakeredis, "
        f"{len(check['diffs'])} replies differ (TIME not compared). Commands the scenario used: "
        + ", ".join(f"{k} {v}" for k, v in check["used"].items())
        + f". Emulated: {', '.join(COMMANDS)}.",
        "",
        "| phase | Lua jobs/s | µs/call p50 / p99 | SQL jobs/s | Lua/SQL | Huey NORMAL jobs/s "
        "| Lua/Huey NORMAL | Huey default jobs/s | Lua/Huey default | SQL stmts/job | count |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in LUA_PHASES:
        got = [r["lua"][phase.key] for r in runs]
        sql = [r["sql"][phase.compare] for r in runs]
        huey = HUEY_OF[phase.compare]
        hn = [r["huey-NORMAL"][huey] for r in runs]
        hd = [r["huey-default"][huey] for r in runs]
        per_job = [g.get("statements_per_job_enqueue", 0) + g.get("statements_per_job_drain", 0)
                   for g in got]  # fmt: skip
        same = "" if huey == phase.compare else f" (its {huey})"
        checks = {g["check"] for g in got}
        lines.append(
            f"| {phase.label} | {_rng([g['rate'] for g in got], ',.0f')} | {_calls(got)} "
            f"| {_med([s['rate'] for s in sql], ',.0f')} "
            f"| {_med([g['rate'] / s['rate'] for g, s in zip(got, sql, strict=True)], '.2f')} "
            f"| {_med([h['rate'] for h in hn], ',.0f')}{same} "
            f"| {_med([g['rate'] / h['rate'] for g, h in zip(got, hn, strict=True)], '.2f')} "
            f"| {_med([h['rate'] for h in hd], ',.0f')} "
            f"| {_med([g['rate'] / h['rate'] for g, h in zip(got, hd, strict=True)], '.2f')} "
            f"| {_med(per_job, '.1f')} | {'; '.join(sorted(checks))} |"
        )
    lines += ["", "The SQL design's phases (µs per call p50 / p99):", "",
              "| phase | SQL jobs/s | µs/call | count |", "|---|---|---|---|"]  # fmt: skip
    for key in SQL_KEYS:
        got = [r["sql"][key] for r in runs]
        checks = {g["check"] for g in got}
        lines.append(f"| {key} | {_rng([g['rate'] for g in got], ',.0f')} | {_calls(got)} "
                     f"| {'; '.join(sorted(checks))} |")  # fmt: skip
    lines += ["", "One call of each script (on a queue of ~200 jobs; statements include BEGIN "
              "and COMMIT; an executemany counts each row):", "",
              "| call | SQL statements | Redis commands issued |", "|---|---|---|"]  # fmt: skip
    for name, c in counts.items():
        cmds = ", ".join(f"{k} {v}" for k, v in c["commands"].items())
        lines.append(f"| {name} | {c['statements']} | {cmds} |")
    data = {"date": when.isoformat(), "machine": machine_line(), "versions": versions,
            "args": {**vars(opts), "command": " ".join(sys.argv[1:])}, "self_check": check,
            "statements": counts, "runs": runs}  # fmt: skip
    return "\n".join(lines) + "\n", data


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs (3; quick 1)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs a phase (10,000; quick 2,000)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run: a check")
    opts = parser.parse_args()
    opts.runs = opts.runs or (1 if opts.quick else 3)
    opts.jobs = opts.jobs or (2000 if opts.quick else 10_000)
    check = self_check()
    print(f"self-check: {check['commands']} commands, {len(check['diffs'])} differ", flush=True)
    if check["diffs"]:
        sys.exit("the emulation differs from fakeredis:\n" + "\n".join(check["diffs"][:20]))
    counts = count_statements()
    for name, c in counts.items():
        print(f"{name}: {c['statements']} statements, {c['commands']}", flush=True)
    ctx = mp.get_context("spawn")
    SCRATCH.mkdir(exist_ok=True)
    runs: list[dict[str, Any]] = []
    failed = False
    opts.load_before = os.getloadavg()
    sql_phases = {p.key: p for p in SQL_PHASES if p.key in SQL_KEYS}
    huey_phases = {p.key: p for p in HUEY_PHASES}
    huey_keys = sorted({HUEY_OF[k] for k in SQL_KEYS}, key=list(HUEY_OF.values()).index)
    for i in range(opts.runs):
        run: dict[str, Any] = {"lua": {}, "sql": {}, **{s: {} for s in HUEYS}}
        for huey in huey_keys:
            hp = huey_phases[huey]
            for system in HUEYS:
                got = run[system][huey] = run_phase(ctx, system, hp, opts.jobs)
                failed |= got["check"] != "ok"
                print(f"run {i + 1}: {system} {huey}: {got['rate']:,.0f} jobs/s, {got['check']}",
                      flush=True)  # fmt: skip
            for key in SQL_KEYS:
                if HUEY_OF[key] == huey:
                    got = run["sql"][key] = run_phase(ctx, "sql", sql_phases[key], opts.jobs)
                    failed |= got["check"] != "ok"
                    print(f"run {i + 1}: sql {key}: {got['rate']:,.0f} jobs/s, {got['check']}",
                          flush=True)  # fmt: skip
            for phase in LUA_PHASES:
                if HUEY_OF[phase.compare] == huey:
                    got = run["lua"][phase.key] = run_lua_phase(ctx, phase, opts.jobs)
                    failed |= got["check"] != "ok"
                    print(f"run {i + 1}: lua {phase.key}: {got['rate']:,.0f} jobs/s, "
                          f"{got['check']}", flush=True)  # fmt: skip
        runs.append(run)
    opts.load_after = os.getloadavg()
    text, data = report(runs, check, counts, opts)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = (
        RESULTS / f"sqlite-lua-probe-{datetime.now(UTC):%Y-%m-%d}{'-quick' if opts.quick else ''}"
    )
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {stem}.md and .json")
    if failed:
        sys.exit("a phase lost or repeated jobs: see the count column")


if __name__ == "__main__":
    main()
