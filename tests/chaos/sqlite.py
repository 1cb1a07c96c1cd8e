"""The SQLite broker under chaos (catalogue rows 33-35), shared by the short tests
(``test_sqlite.py``) and the long run: ``python -m tests.chaos.sqlite [--jobs N] ...``.

* row 33, ``run_kill_storm``: ``taskit worker`` processes (``tests.apps.sqlite_chaos_app``) drain
  jobs from one file while a random one is SIGKILLed every ``kill_every`` seconds and replaced;
  every acknowledged job must complete (lost 0), and each rerun must follow the death of the
  process that ran it before.
* row 34, ``run_write_kills``: producers enqueueing batches and workers settling jobs are
  SIGKILLed at random moments, mid-transaction; after each kill the file must pass
  ``PRAGMA integrity_check``, agree with itself (the ``counts`` table against the jobs), hold
  every batch whole or not at all, and hold every acknowledged batch.
* row 35, ``run_producers``: 200 producers (threads, spread over processes), each on its own
  connection, enqueue into one file at once; each job must be stored once, the ids they share
  too.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio

from taskit import App, Settings
from taskit.broker import SqliteBroker
from taskit.broker.sqlite.schema import RANKS
from tests.chaos.producing import enqueue_work, work_jobs

# Statuses ``counts`` does not keep (finished records: nothing reads their number).
_UNCOUNTED = frozenset({"completed", "failed", "cancelled"})

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.sqlite_chaos_app:app"
#: The storm's jobs' ``max_retries``: more than any job meets kills in a run.
STORM_RETRIES = 100
BATCH = 50  # jobs per enqueue in row 34


def url_of(db: Path) -> str:
    return f"sqlite:///{db.resolve()}"  # an absolute path: four slashes


def spawn_worker(
    db: Path, directory: Path, lease: float, reaper: float, concurrency: int = 8
) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKIT_")},
        "TASKIT_BROKER_URL": url_of(db), "TASKIT_VISIBILITY_TIMEOUT": str(lease),
        "TASKIT_REAPER_INTERVAL": str(reaper), "TASKIT_MAX_RETRIES": "50",
        "TASKIT_BACKOFF": "0", "CHAOS_LEDGER": str(directory / "ledger"),
    }  # fmt: skip
    log = open(directory / "workers.log", "ab")  # noqa: SIM115 (the child holds it)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "taskit", "worker", APP, "-c", str(concurrency),
             "--log-level", "WARNING"],
            cwd=ROOT, env=env, stdout=log, stderr=log,
        )  # fmt: skip
    finally:
        log.close()


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill(proc)


def starts(directory: Path) -> list[tuple[str, int]]:
    """``(job id, pid)`` of every handler start in the ledgers, in the order of their times."""
    found: list[tuple[float, str, int]] = []
    for path in (directory / "ledger").glob("*.ledger"):
        for line in path.read_text().splitlines():
            parts = line.split("|")
            if len(parts) == 4 and parts[0] == "S":
                found.append((float(parts[3]), parts[1], int(parts[2])))
    return [(job_id, pid) for _, job_id, pid in sorted(found)]


def statuses(db: Path, ids: list[str] | None = None) -> Counter[str]:
    with sqlite3.connect(db) as conn:
        if ids is None:
            rows = conn.execute("SELECT status FROM jobs").fetchall()
            return Counter(status for (status,) in rows)
        by_id = dict(conn.execute("SELECT id, status FROM jobs").fetchall())
    return Counter(by_id.get(job_id, "missing") for job_id in ids)


def consistency(db: Path) -> list[str]:
    """What is wrong with the file: ``integrity_check`` findings, ``counts`` rows that disagree
    with the jobs (read in one snapshot); empty when nothing is."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        problems = [r for (r,) in conn.execute("PRAGMA integrity_check") if r != "ok"]
        conn.execute("BEGIN")
        counted = {
            (q, s): n
            for q, s, n in conn.execute(
                "SELECT queue, status, n FROM counts WHERE queue != ?", (RANKS,)
            )
            if n and not s.startswith("total:")  # totals ever, not a status's jobs now
        }
        actual = dict(
            ((q, s), n)
            for q, s, n in conn.execute(
                "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status"
            )
            if s not in _UNCOUNTED
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    if counted != actual:
        problems.append(f"counts {counted} != jobs {actual}")
    return problems


# -- row 33 --------------------------------------------------------------------------------------
@dataclass
class StormResult:
    jobs: int
    kills: int
    seconds: float
    lost: int
    reruns: int
    unjustified: int

    def line(self) -> str:
        return (
            f"jobs={self.jobs} kills={self.kills} lost={self.lost} reruns={self.reruns} "
            f"unjustified={self.unjustified} seconds={self.seconds:.1f} "
            f"jobs/s={self.jobs / self.seconds:.0f}"
        )


async def run_kill_storm(
    directory: Path, *, jobs: int, workers: int = 3, kill_every: float = 0.7, seed: int = 33,
    lease: float = 2.0, reaper: float = 0.5, max_seconds: float = 300.0, concurrency: int = 8,
    task: str = "chaos.work",
) -> StormResult:  # fmt: skip
    rng = random.Random(seed)
    db = directory / "jobs.db"
    app = App(url_of(db), settings=Settings())
    live = [spawn_worker(db, directory, lease, reaper, concurrency) for _ in range(workers)]
    killed: set[int] = set()
    try:
        keys = [f"k{i}" for i in range(jobs)]
        began = time.monotonic()
        durations = [rng.uniform(0.01, 0.2) for _ in keys]
        # Every kill costs the job its worker held an attempt (an expired lease counts, run or
        # not: the reaper cannot tell), so a job held by several victims in a row would be
        # dead-lettered by the retry policy; the storm measures loss, so it leaves room.
        acked = await enqueue_work(app, keys, durations, task=task, max_retries=STORM_RETRIES)
        next_kill = time.monotonic() + kill_every
        with anyio.fail_after(max_seconds):
            while True:
                stats = (await app.stats(["default"]))["default"]
                if stats.queued + stats.scheduled + stats.running == 0:
                    break
                if time.monotonic() >= next_kill:
                    victim = live.pop(rng.randrange(len(live)))
                    kill(victim)
                    killed.add(victim.pid)
                    live.append(spawn_worker(db, directory, lease, reaper, concurrency))
                    next_kill = time.monotonic() + kill_every
                await anyio.sleep(0.05)
        seconds = time.monotonic() - began
    finally:
        await app.close()
        stop_all(live)
    final = statuses(db, acked)
    by_job: dict[str, list[int]] = {}
    for job_id, pid in starts(directory):
        by_job.setdefault(job_id, []).append(pid)
    reruns = sum(len(pids) - 1 for pids in by_job.values())
    # a rerun is justified when the process of an earlier start was SIGKILLed
    unjustified = sum(
        1 for pids in by_job.values() for i in range(1, len(pids)) if pids[i - 1] not in killed
    )
    lost = sum(n for status, n in final.items() if status != "completed")
    if lost:  # say what became of them
        print(f"row 33: statuses {dict(final)}")
    return StormResult(jobs, len(killed), seconds, lost, reruns, unjustified)


# -- row 34 --------------------------------------------------------------------------------------
def produce(db: Path, acks: Path) -> None:
    """A producer process: enqueue batches of ``BATCH`` jobs for ever; after each returns,
    append its prefix to ``acks`` (one ``O_APPEND`` write)."""
    app = App(url_of(db), settings=Settings())
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def loop() -> None:
        for n in range(10**9):
            prefix = f"p{os.getpid()}-{n}"
            jobs = work_jobs(app, [f"{prefix}-{i}" for i in range(BATCH)], 0.0)
            await app.enqueue_many(jobs)
            os.write(fd, f"{prefix}\n".encode())

    anyio.run(loop)


def spawn_producer(db: Path, directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.chaos.sqlite", "_produce", str(db),
         str(directory / "acks")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@dataclass
class WriteKillResult:
    kills: int
    checks: int
    batches: int
    acked: int
    torn: int
    lost: int
    problems: list[str]

    def line(self) -> str:
        return (
            f"kills={self.kills} checks={self.checks} batches={self.batches} "
            f"acked={self.acked} torn={self.torn} lost={self.lost} problems={len(self.problems)}"
        )


def run_write_kills(
    directory: Path, *, kills: int, seed: int = 34, lease: float = 1.0, reaper: float = 0.3
) -> WriteKillResult:
    rng = random.Random(seed)
    db = directory / "jobs.db"
    anyio.run(lambda: SqliteBroker(db).stats())  # the file and schema, before the kills
    producers = [spawn_producer(db, directory) for _ in range(2)]
    workers = [spawn_worker(db, directory, lease, reaper) for _ in range(2)]
    problems: list[str] = []
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 0.4))  # producers, workers mid-write most of the time
            pool = producers if rng.random() < 0.5 else workers
            index = rng.randrange(len(pool))
            kill(pool[index])
            problems += consistency(db)
            pool[index] = (
                spawn_producer(db, directory) if pool is producers
                else spawn_worker(db, directory, lease, reaper)
            )  # fmt: skip
        stop_all(producers)
        # the workers drain what was stored: every acknowledged job must end
        deadline = time.monotonic() + 120
        while statuses(db)["pending"] + statuses(db)["running"] + statuses(db)["retrying"]:
            if time.monotonic() > deadline:
                problems.append(f"not drained in 120 s: {statuses(db)}")
                break
            time.sleep(0.2)
    finally:
        stop_all(producers + workers)
    problems += consistency(db)
    acked = (directory / "acks").read_text().split() if (directory / "acks").exists() else []
    with sqlite3.connect(db) as conn:
        ids = [job_id for (job_id,) in conn.execute("SELECT id FROM jobs")]
        done = {i for (i,) in conn.execute("SELECT id FROM jobs WHERE status = 'completed'")}
    per_batch = Counter(job_id.rpartition("-")[0] for job_id in ids)
    torn = sum(1 for n in per_batch.values() if n != BATCH)
    lost = sum(1 for prefix in acked for i in range(BATCH) if f"{prefix}-{i}" not in done)
    return WriteKillResult(kills, kills + 1, len(per_batch), len(acked), torn, lost, problems)


# -- row 35 --------------------------------------------------------------------------------------
SHARED = 5  # ids every producer enqueues too: each must be stored once


def producer_threads(db: Path, first: int, threads: int, jobs: int, start_at: float) -> int:
    """``threads`` producers (ids ``first`` on), each on a broker (connection) of its own,
    enqueueing ``jobs`` jobs one call each, then the ``SHARED`` ids; all start at wall time
    ``start_at``. Returns how many enqueues failed."""
    maker = App("memory://", settings=Settings())  # prepares the jobs only
    failures: list[BaseException] = []

    def one(n: int) -> None:
        broker = SqliteBroker(db)
        keys = [f"t{n}-{i}" for i in range(jobs)] + [f"shared-{i}" for i in range(SHARED)]
        prepared = work_jobs(maker, keys, 0.0)
        time.sleep(max(0.0, start_at - time.time()))
        try:
            for job in prepared:
                broker.enqueue_blocking([job])
        except BaseException as exc:  # counted, and the test fails on it
            failures.append(exc)
        finally:
            anyio.run(broker.close)

    pool = [threading.Thread(target=one, args=(first + n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    for exc in failures[:3]:
        print(f"producer failed: {exc!r}", file=sys.stderr)
    return len(failures)


@dataclass
class ProducersResult:
    producers: int
    jobs: int
    stored: int
    missing: int
    doubled: int
    failed: int
    seconds: float
    problems: list[str]

    def line(self) -> str:
        return (
            f"producers={self.producers} jobs={self.jobs} stored={self.stored} "
            f"missing={self.missing} doubled={self.doubled} failed={self.failed} "
            f"seconds={self.seconds:.1f} problems={len(self.problems)}"
        )


def run_producers(directory: Path, *, processes: int, threads: int, jobs: int) -> ProducersResult:
    db = directory / "jobs.db"
    anyio.run(lambda: SqliteBroker(db).stats())  # the file and schema, before the rush
    start_at = time.time() + 3.0 + processes * 0.3  # after every process has imported taskit
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.chaos.sqlite",
                "_threads",
                str(db),
                str(p * threads),
                str(threads),
                str(jobs),
                repr(start_at),
            ],
            cwd=ROOT,
        )
        for p in range(processes)
    ]
    failed = sum(proc.wait() for proc in procs)
    seconds = time.time() - start_at
    producers = processes * threads
    expected = [f"t{n}-{i}" for n in range(producers) for i in range(jobs)]
    expected += [f"shared-{i}" for i in range(SHARED)]
    with sqlite3.connect(db) as conn:
        ids = Counter(job_id for (job_id,) in conn.execute("SELECT id FROM jobs"))
    missing = sum(1 for job_id in expected if job_id not in ids)
    doubled = sum(1 for n in ids.values() if n > 1)
    return ProducersResult(
        producers, len(expected), sum(ids.values()), missing, doubled, failed, seconds,
        consistency(db),
    )  # fmt: skip


# -- long mode -----------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_produce":
        produce(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_threads":
        db, first, threads, jobs, start_at = sys.argv[2:7]
        sys.exit(min(producer_threads(Path(db), int(first), int(threads), int(jobs),
                                      float(start_at)), 1))  # fmt: skip
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="row 33: jobs drained")
    parser.add_argument("--kills", type=int, default=200, help="row 34: SIGKILLs mid-write")
    parser.add_argument("--processes", type=int, default=200, help="row 35: producer processes")
    parser.add_argument("--threads", type=int, default=1, help="row 35: producers per process")
    parser.add_argument("--per-producer", type=int, default=50, help="row 35: jobs each")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/")
    args = parser.parse_args()
    import tempfile

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "33").mkdir()
        storm = anyio.run(lambda: run_kill_storm(Path(tmp) / "33", jobs=args.jobs))
        lines.append(f"| 33 | kill -9 workers under load | {storm.line()} |")
        print(lines[-1], flush=True)
        (Path(tmp) / "34").mkdir()
        writes = run_write_kills(Path(tmp) / "34", kills=args.kills)
        lines.append(f"| 34 | kill -9 during writes | {writes.line()} |")
        print(lines[-1], *writes.problems[:5], sep="\n", flush=True)
        (Path(tmp) / "35").mkdir()
        many = run_producers(
            Path(tmp) / "35", processes=args.processes, threads=args.threads,
            jobs=args.per_producer,
        )  # fmt: skip
        lines.append(f"| 35 | {many.producers} concurrent producers | {many.line()} |")
        print(lines[-1], *many.problems[:5], sep="\n", flush=True)
    if args.write:
        stamp = datetime.now(UTC)
        out = ROOT / "benchmarks" / "results" / f"reliability-sqlite-{stamp:%Y-%m-%d}.md"
        out.write_text(
            f"# SQLite broker chaos, long run ({stamp:%Y-%m-%d %H:%M} UTC)\n\n"
            f"`python -m tests.chaos.sqlite {' '.join(sys.argv[1:])}` on {os.cpu_count()} "
            f"cores, SQLite {sqlite3.sqlite_version}; row 33: 3 workers (-c 8), one SIGKILLed "
            "every 0.7 s, lease 2 s, reaper 0.5 s; row 34: 2 producers (batches of 50) and 2 "
            "workers, a random one SIGKILLed every 0.05-0.4 s, the file checked after each "
            "kill.\n\n| # | scenario | figures |\n|---|---|---|\n" + "\n".join(lines) + "\n"
        )
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
