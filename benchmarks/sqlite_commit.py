"""What a SQLite commit costs, and where a concurrency-1 worker's step spends its time.

* **Commit by pages**: a plain WAL file (``synchronous=NORMAL``, 4 KB pages, on this disk), one
  row in each of N tables; ``--txs`` transactions of ``BEGIN IMMEDIATE``, an ``UPDATE`` of that
  row in each of N tables, ``COMMIT``: µs a transaction and µs in its ``COMMIT``, for N = 1, 2,
  4, 6, 8 (each table a page written at the commit).
* **The step, statement by statement**: ``SqliteBroker.settle_and_reserve`` of one job as a
  worker at concurrency 1 calls it, ``--steps`` times over a queue of no-op jobs; the time from
  each statement's start (the ``sqlite3`` trace callback) to the next, summed by statement
  kind (the first words of its SQL; a trigger's sub-program shows as its statement again), and
  the WAL frames a step writes (the median growth of the ``-wal`` file over the steps that grew
  it: after the store's own checkpoint the file is written again from its start).

Median of ``--runs`` runs. Writes ``benchmarks/results/sqlite-commit-<date>[-TAG].md``.

    .venv/bin/python -m benchmarks.sqlite_commit [--runs 3] [--txs 3000] [--steps 2000] [--tag T]
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from benchmarks._machine import machine_line
from benchmarks.sqlite import SCRATCH, _fresh, _taskit_app
from taskit.job import Outcome, OutcomeKind

RESULTS = Path(__file__).parent / "results"
PAGES = (1, 2, 4, 6, 8)
FRAME = 4096 + 24  # a WAL frame: its header and one 4 KB page


def commits(txs: int) -> dict[int, tuple[float, float]]:
    """Pages -> (µs a transaction, µs in its COMMIT)."""
    path = SCRATCH / "commit.db"
    SCRATCH.mkdir(parents=True, exist_ok=True)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for i in range(max(PAGES)):
        conn.execute(f"CREATE TABLE t{i} (k INTEGER PRIMARY KEY, v INTEGER)")
        conn.execute(f"INSERT INTO t{i} VALUES (1, 0)")
    out: dict[int, tuple[float, float]] = {}
    for pages in PAGES:
        in_commit = 0.0
        began = time.perf_counter()
        for _ in range(txs):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(pages):
                conn.execute(f"UPDATE t{i} SET v = v + 1 WHERE k = 1")
            at = time.perf_counter()
            conn.execute("COMMIT")
            in_commit += time.perf_counter() - at
        out[pages] = ((time.perf_counter() - began) / txs * 1e6, in_commit / txs * 1e6)
    conn.close()
    return out


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _kind(sql: str) -> str:
    words = sql.split()
    return " ".join(words[:4]) if words else "?"


async def _steps(steps: int) -> tuple[dict[str, float], float, float]:
    """Statement kind -> µs a step; µs a step in all; WAL frames a step."""
    seen: list[tuple[float, str]] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: seen.append((time.perf_counter(), _kind(sql))))
        return conn

    sqlite3.connect = traced  # type: ignore[assignment]
    try:
        db = _fresh()
        app, probe = _taskit_app(db)
        for first in range(0, steps + 1, 500):
            await app.enqueue_many([probe.prepare(k, 0.0) for k in range(first, first + 500)])
        leases = await app.broker.reserve(["default"], count=1, lease=30.0, timeout=0)
        wal = Path(f"{db}-wal")
        by_kind: dict[str, float] = defaultdict(float)
        total = 0.0
        growth: list[int] = []
        for _ in range(steps):
            done = [Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.COMPLETE)
                    for held in leases]  # fmt: skip
            seen.clear()
            size = _size(wal)
            began = time.perf_counter()
            both = await app.broker.settle_and_reserve(done, ["default"], count=1, lease=30.0)
            ended = time.perf_counter()
            assert both is not None
            leases = both[1]
            after = _size(wal)
            if after > size:  # after a checkpoint the file is reused from its start
                growth.append(after - size)
            marks = [*seen, (ended, "")]
            by_kind["(before the first statement)"] += marks[0][0] - began
            for (at, kind), (then, _) in itertools.pairwise(marks):
                by_kind[kind] += then - at
            total += ended - began
        await app.close()
    finally:
        sqlite3.connect = connect
    per = {kind: seconds / steps * 1e6 for kind, seconds in by_kind.items()}
    return per, total / steps * 1e6, statistics.median(growth) / FRAME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--txs", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    commit_runs = [commits(args.txs) for _ in range(args.runs)]
    step_runs = [anyio.run(_steps, args.steps) for _ in range(args.runs)]
    lines = ["| pages a transaction | µs a transaction | µs in its COMMIT |", "|---|---|---|"]
    for pages in PAGES:
        tx = statistics.median(run[pages][0] for run in commit_runs)
        commit = statistics.median(run[pages][1] for run in commit_runs)
        lines.append(f"| {pages} | {tx:.1f} | {commit:.1f} |")

    def spent(kind: str) -> float:
        return statistics.median(per.get(kind, 0.0) for per, _, _ in step_runs)

    kinds = sorted({kind for per, _, _ in step_runs for kind in per}, key=spent, reverse=True)
    lines += ["", "| statement (the step, settle and take) | µs a step |", "|---|---|"]
    for kind in kinds:
        value = spent(kind)
        if value >= 0.5:
            lines.append(f"| `{kind}` | {value:.1f} |")
    lines.append(f"| **all** | {statistics.median(t for _, t, _ in step_runs):.1f} |")
    frames = statistics.median(f for _, _, f in step_runs)
    lines.append(f"| WAL frames written a step | {frames:.1f} |")
    stamp = datetime.now(UTC)
    name = f"sqlite-commit-{stamp:%Y-%m-%d}" + (f"-{args.tag}" if args.tag else "")
    head = (
        f"# A SQLite commit, and the concurrency-1 step ({stamp:%Y-%m-%d %H:%M} UTC)\n\n"
        f"`python -m benchmarks.sqlite_commit --runs {args.runs} --txs {args.txs} --steps "
        f"{args.steps}`; median of {args.runs} runs; {machine_line()}; SQLite "
        f"{sqlite3.sqlite_version}; on this disk (benchmarks/.sqlite-tmp/).\n\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(head + "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {RESULTS / name}.md")


if __name__ == "__main__":
    main()
