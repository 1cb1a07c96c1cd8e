"""Long mode of the chaos suite: ``python -m tests.chaos [--jobs N] [--storm-seconds S] ...``.

Runs the kill storm far longer than CI does, the Redis restarts under every persistence setting,
a SIGKILL recovery measurement, poison fields under load, retention over many jobs, a Redis out
of memory at times (row 22; alone: ``python -m tests.chaos.memory``), and the Hypothesis state
machine with many more examples (shrinking on). Writes ``benchmarks/results/reliability-<date>.md``
and the figures table of ``docs/reliability.md`` (between its ``figures`` markers). Needs
``redis-server`` on PATH and a Redis at 127.0.0.1:6379 for the state machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

from taskit import App
from tests.chaos.harness import cluster, wait_until
from tests.chaos.memory import run_memory, table_row
from tests.chaos.poison import row_cells, run_poison
from tests.chaos.producing import enqueue_work
from tests.chaos.restart import run_restart
from tests.chaos.retention import run_retention
from tests.chaos.storm import run_storm
from tests.e2e.helpers import ROOT, RedisServer

BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return out.split("v=")[1].split()[0] if "v=" in out else out.strip()


async def sigkill_recovery(directory: Path, runs: int) -> list[float]:
    """Row 1, repeated: seconds from SIGKILL of a job's worker to its second start elsewhere."""
    out = []
    for n in range(runs):
        with cluster(directory / f"kill{n}") as chaos:
            app = App(chaos.url)
            try:
                victim = chaos.spawn("-c", "1")
                await enqueue_work(app, ["long"], 2.0)
                wait_until(lambda: any(e.kind == "S" for e in chaos.entries()), 20)
                chaos.spawn("-c", "1")
                killed = chaos.kill(victim)
                await app.result("long", timeout=60)
            finally:
                await app.close()
            starts = [e.at for e in chaos.entries() if e.kind == "S" and e.job_id == "long"]
            out.append(starts[1] - killed)
    return out


def model_run(examples: int, steps: int) -> tuple[bool, float]:
    env = {**os.environ, "CHAOS_MODEL_EXAMPLES": str(examples), "CHAOS_MODEL_STEPS": str(steps),
           "CHAOS_MODEL_SHRINK": "1"}  # fmt: skip
    began = time.monotonic()
    code = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/chaos/test_model.py"], cwd=ROOT, env=env,
    )  # fmt: skip
    return code == 0, time.monotonic() - began


async def main(args: argparse.Namespace) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="taskit-chaos-"))
    rows: list[str] = []
    notes: list[str] = []

    def row(*cells: object) -> None:
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
        print(rows[-1], flush=True)

    rec = await sigkill_recovery(tmp, args.kill_runs)
    row(1, "SIGKILL mid-job", "none", "2 s", "0.5 s", len(rec), 0, len(rec), 0,
        f"max {max(rec):.2f} s, mean {sum(rec) / len(rec):.2f} s (bound 2.5 s)")  # fmt: skip

    storm = await run_storm(tmp / "storm", jobs=args.jobs, workers=3, kill_every=2.0, seed=7,
                            durations=(0.01, 0.5), max_seconds=args.storm_seconds)  # fmt: skip
    r = storm.report
    row(2, "kill storm (3 workers x 8, SIGKILL every 2 s)", "none", "2 s", "0.5 s", r.acked,
        len(r.lost), f"{len(r.dup)} ({r.dup_pct:.2f}%)", len(r.unjustified),
        f"{storm.kills} kills, max attempts {r.max_attempts}, "
        f"{storm.jobs_per_second:.0f} jobs/s")  # fmt: skip

    for number, mode in ((8, "always"), (9, "everysec"), (9, "rdb"), (10, "none")):
        f = await run_restart(tmp / f"restart-{mode}", mode, before=args.restart_seconds,
                              after=args.restart_seconds, interval=0.005)  # fmt: skip
        r = f.report
        persistence = {"always": "AOF always", "everysec": "AOF everysec", "rdb": "RDB save 1 1",
                       "none": "none"}[mode]  # fmt: skip
        row(number, f"Redis kill -9 + restart ({f.acked_before_kill} acked before the kill)",
            persistence, "2 s", "0.5 s", r.acked, len(r.lost), len(r.dup), len(r.unjustified),
            f"first completion {f.recovery:.2f} s after the kill; lost in the last "
            f"{f.window:.0f} s: {f.lost_in_window}; reruns of jobs Redis forgot had run: "
            f"{len(r.rollback_reruns)}; empty restart detected: {f.detected}; "
            f"stuck in flight: {f.stuck_running}")  # fmt: skip

    poison = await run_poison(tmp / "poison", jobs=args.poison_jobs, workers=3,
                              corrupt_every=0.01, seed=11, max_seconds=600.0)  # fmt: skip
    row(*row_cells(poison, 0.01))

    (tmp / "retention").mkdir()
    server = RedisServer(tmp / "retention")
    server.start()
    try:
        ret = await run_retention(server.url, jobs=args.retention_jobs)
    finally:
        server.kill()
    row(17, "retention", "none", "-", "-", ret.jobs, 0, 0, 0,
        f"used_memory {ret.baseline} B before, {ret.peak} B peak, {ret.after} B after "
        f"(+{ret.growth} B); orphan keys {len(ret.orphans)}; live keys with a TTL "
        f"{ret.live_ttls}; {ret.jobs / ret.seconds:.0f} jobs/s")  # fmt: skip

    memory = await run_memory(tmp / "memory", jobs=args.memory_jobs, cycles=args.memory_cycles)
    rows.append(table_row(memory))
    print(rows[-1], flush=True)

    ok, seconds = model_run(args.model_examples, args.model_steps)
    row(18, f"state machine, {args.model_examples} runs x {args.model_steps} steps",
        "Redis at :6379", "-", "-", "-", "-", "-", "-",
        f"{'passed' if ok else 'FAILED'} in {seconds:.0f} s")  # fmt: skip
    notes.append(f"scratch directory: {tmp}")
    return "\n".join(rows)


def render(table: str, args: argparse.Namespace) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python -m tests.chaos", *sys.argv[1:]])
    return (
        f"Measured {now} with `{command}` on {os.cpu_count()} shared cores; "
        f"Redis {redis_version()}; workers `taskit worker` "
        "subprocesses (uvloop), lease (visibility timeout) 2 s, reaper interval 0.5 s, "
        "backoff 0, each test on a redis-server of its own.\n\n"
        "| # | scenario | persistence | lease | reaper | jobs | lost | dup | unjustified dup "
        "| recovery and notes |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n" + table + "\n"
    )


def write(text: str) -> Path:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    result = ROOT / "benchmarks" / "results" / f"reliability-{day}.md"
    result.write_text(f"# Reliability figures, {day}\n\n{text}")
    doc = ROOT / "docs" / "reliability.md"
    page = doc.read_text()
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="kill-storm jobs")
    parser.add_argument("--storm-seconds", type=float, default=900.0)
    parser.add_argument("--kill-runs", type=int, default=5)
    parser.add_argument("--restart-seconds", type=float, default=3.0)
    parser.add_argument("--retention-jobs", type=int, default=200_000)
    parser.add_argument("--memory-jobs", type=int, default=5000, help="row 22 jobs")
    parser.add_argument("--memory-cycles", type=int, default=8, help="row 22 full cycles")
    parser.add_argument("--poison-jobs", type=int, default=3000)
    parser.add_argument("--model-examples", type=int, default=200)
    parser.add_argument("--model-steps", type=int, default=50)
    parser.add_argument("--no-write", action="store_true", help="print only")
    arguments = parser.parse_args()
    body = render(anyio.run(main, arguments), arguments)
    print(body)
    if not arguments.no_write:
        print(f"wrote {write(body)} and docs/reliability.md")
