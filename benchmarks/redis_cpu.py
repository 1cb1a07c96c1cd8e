"""Redis's CPU per job lifecycle, taskit beside taskiq's stream broker (issue 19, target 1).

On a private ``redis-server`` (``--port``, 6391 by default; started here and stopped by its pid,
no persistence) each system in turn, the order alternating from run to run, queues ``--jobs``
no-op jobs and then drains them with one worker process at concurrency 10 (``taskit worker``'s
default; ``taskiq worker --max-async-tasks 10``). Two enqueue modes:

* **single**: one producer coroutine awaiting one enqueue after another (taskit
  ``task.enqueue()``, taskiq ``task.kiq()``);
* **batch**: taskit ``app.enqueue_many`` of 1,000 jobs a call; taskiq has no batch API, so its
  ``kiq()`` calls run 100 at a time (``benchmarks.peers.base.FILL_CONCURRENCY``), its nearest.

Each phase (enqueue, drain) reads ``INFO`` before and after: Redis CPU (``used_cpu_user +
used_cpu_sys``) and ``INFO commandstats`` (calls and usec by command, the commands scripts run
inside included: Redis 7 counts them). CPU per job is net of the server's idle CPU (its rate
measured for ``IDLE`` seconds with no clients before the runs, times the phase's wall time). The
drain phase runs from just before the worker starts to ``SETTLE`` seconds after the probe saw the
last job run (so the last settles and acknowledgements are in). Every job proves it ran
(``benchmarks.probe``, reporting to a second private ``redis-server`` so that the measured one
serves only the system under test), and the count must be exact.

Then one more round per system and mode (at most ``SLOWLOG_JOBS`` jobs) with ``SLOWLOG`` at every
command (not timed: the log costs CPU itself; Redis 7 logs the commands scripts run too) splits
``EVALSHA`` by script: calls and usec per script per job.

Median over ``--runs`` (3) runs, range in brackets, the ratio taskit / taskiq taken within each
run. Writes ``benchmarks/results/redis-cpu-<date>[-<tag>].md`` and ``.json`` with the date,
machine and versions.

    benchmarks/.venv-peers/bin/python -m benchmarks.redis_cpu [--runs 3] [--jobs 10000]
        [--port 6391] [--tag T]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, get_args

from redis.asyncio import Redis

from benchmarks._redis_cpu_report import write_report
from benchmarks._server import redis_server
from benchmarks._workers import WorkerGroup
from benchmarks.peers.base import FILL_CONCURRENCY, System
from benchmarks.peers.taskiq_bench import Bench as TaskiqBench
from benchmarks.peers.taskit_bench import Bench as TaskitBench
from taskit.broker.redis.scripts import SCRIPTS, ScriptName

SYSTEMS: dict[str, type[System]] = {"taskit": TaskitBench, "taskiq": TaskiqBench}
MODES = ("single", "batch")
CONCURRENCY = 10
BATCH = 1000
#: Seconds the server is watched with no clients, for its idle CPU rate.
IDLE = 3.0
#: Seconds after the last job ran before the drain's counters are read (last settles, acks).
SETTLE = 0.5
#: Jobs in the SLOWLOG round (at most), and log entries kept per job (every command a script
#: runs is logged too).
SLOWLOG_JOBS = 2000
SLOWLOG_PER_JOB = 100
#: Seconds a drain may take at most.
DRAIN_TIMEOUT = 300.0


@dataclass
class Phase:
    """One phase's server-side cost: Redis CPU seconds (raw and net of idle), wall seconds, and
    per command its calls and usec (``INFO commandstats`` deltas; ``info`` left out)."""

    cpu: float
    net_cpu: float
    seconds: float
    calls: dict[str, int] = field(default_factory=dict)
    usec: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    cpu: float
    at: float
    calls: dict[str, int]
    usec: dict[str, int]


async def snapshot(client: Redis) -> Snapshot:
    """Redis CPU seconds so far and commandstats, from one ``INFO``."""
    info = await client.info("all")
    stats = {k.removeprefix("cmdstat_"): v for k, v in info.items() if k.startswith("cmdstat_")}
    return Snapshot(
        cpu=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        at=time.monotonic(),
        calls={name: int(v["calls"]) for name, v in stats.items()},
        usec={name: int(v["usec"]) for name, v in stats.items()},
    )


def between(before: Snapshot, after: Snapshot, idle_rate: float) -> Phase:
    """The cost from ``before`` to ``after`` (the ``INFO`` calls left out)."""
    seconds = after.at - before.at
    cpu = after.cpu - before.cpu
    names = [n for n in after.calls if n != "info" and after.calls[n] != before.calls.get(n, 0)]
    return Phase(
        cpu=cpu,
        net_cpu=cpu - idle_rate * seconds,
        seconds=seconds,
        calls={n: after.calls[n] - before.calls.get(n, 0) for n in names},
        usec={n: after.usec[n] - before.usec.get(n, 0) for n in names},
    )


@contextmanager
def private_server(port: int) -> Iterator[str]:
    """``redis-server`` on 127.0.0.1:``port`` (no RDB, no AOF), stopped by its pid on leaving."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"redis-server exited: is port {port} taken?") from None
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


async def idle_rate(client: Redis, seconds: float = IDLE) -> float:
    """The server's CPU seconds per second with no client doing anything."""
    before = await snapshot(client)
    await asyncio.sleep(seconds)
    after = await snapshot(client)
    return (after.cpu - before.cpu) / (after.at - before.at)


async def enqueue(system: System, mode: str, jobs: int) -> None:
    if mode == "single":
        for _ in range(jobs):
            await system.enqueue()
    elif system.name == "taskit":
        for start in range(0, jobs, BATCH):
            await system.enqueue_batch(min(BATCH, jobs - start))
    else:  # no batch API: FILL_CONCURRENCY calls in flight, its nearest
        for start in range(0, jobs, FILL_CONCURRENCY):
            n = min(FILL_CONCURRENCY, jobs - start)
            await asyncio.gather(*(system.enqueue() for _ in range(n)))


def worker(system: System, url: str, probe_url: str, run: str, jobs: int) -> WorkerGroup:
    """One worker process of ``system`` at concurrency 10, its probe reporting to ``probe_url``."""
    argv = system.worker_command()
    if system.name == "taskiq":
        argv += ["--max-async-tasks", str(CONCURRENCY)]
    group = WorkerGroup(argv, run, probe_url, "final", jobs)
    group.env["BENCH_APP_URL"] = url
    group.env["TASKIT_CONCURRENCY"] = str(CONCURRENCY)
    return group


async def one_round(
    name: str, mode: str, url: str, probe_url: str, jobs: int, idle: float, run: str
) -> dict[str, Phase]:
    """Enqueue then drain ``jobs`` on a flushed server; the two phases' costs."""
    client, probe = Redis.from_url(url), Redis.from_url(probe_url)
    try:
        await client.flushall()
        await client.config_resetstat()
        system = SYSTEMS[name](url)
        await system.open()
        try:
            s0 = await snapshot(client)
            await enqueue(system, mode, jobs)
            s1 = await snapshot(client)
        finally:
            await system.close()
        group = worker(system, url, probe_url, run, jobs)
        group.start()
        try:
            drained = await group.wait_done(probe, DRAIN_TIMEOUT)
            await asyncio.sleep(SETTLE)
            s2 = await snapshot(client)
        finally:
            group.stop()
        if drained.jobs != jobs:
            raise RuntimeError(f"{name} {mode}: {drained.jobs} jobs ran, {jobs} enqueued")
        return {"enqueue": between(s0, s1, idle), "drain": between(s1, s2, idle)}
    finally:
        await client.aclose()
        await probe.aclose()


async def by_script(
    name: str, mode: str, url: str, probe_url: str, jobs: int, run: str
) -> dict[str, dict[str, float]]:
    """One untimed round with every command in ``SLOWLOG``: per top-level command (``EVALSHA``
    named by its script) its calls and usec, summed over both phases."""
    client = Redis.from_url(url)
    names = {SCRIPTS[n].sha: n for n in get_args(ScriptName)}
    try:
        await client.config_set("slowlog-max-len", SLOWLOG_PER_JOB * jobs)
        await client.config_set("slowlog-log-slower-than", 0)
        await one_round(name, mode, url, probe_url, jobs, 0.0, run)
        entries: list[Any] = await client.execute_command("SLOWLOG", "GET", "-1")
    finally:
        await client.config_set("slowlog-log-slower-than", 10000)
        await client.execute_command("SLOWLOG", "RESET")
        await client.aclose()
    out: dict[str, dict[str, float]] = {}
    for entry in entries:
        args = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in entry[3]]
        command = args[0].lower() if args else "?"
        if command in ("evalsha", "evalsha_ro") and len(args) > 1:
            command = "EVALSHA " + names.get(args[1], args[1][:8])
        if command in ("slowlog", "config", "info", "flushall"):
            continue
        row = out.setdefault(command, {"calls": 0.0, "usec": 0.0})
        row["calls"] += 1
        row["usec"] += int(entry[2])
    return out


async def main(args: argparse.Namespace) -> None:
    rounds: dict[str, list[dict[str, Phase]]] = {
        f"{name} {mode}": [] for mode in args.modes for name in args.systems
    }
    scripts: dict[str, dict[str, dict[str, float]]] = {}
    with private_server(args.port) as url, redis_server() as probe_url:
        client = Redis.from_url(url)
        idle = await idle_rate(client)
        version = (await client.info("server"))["redis_version"]
        await client.aclose()
        for r in range(args.runs):
            order = args.systems if r % 2 == 0 else list(reversed(args.systems))
            for mode in args.modes:
                for name in order:
                    phases = await one_round(name, mode, url, probe_url, args.jobs, idle, f"{r}")
                    rounds[f"{name} {mode}"].append(phases)
                    print(f"run {r + 1} {name} {mode}: " + ", ".join(
                        f"{p} {1e6 * v.net_cpu / args.jobs:.1f} µs/job" for p, v in phases.items()
                    ), flush=True)  # fmt: skip
        for mode in args.modes:
            for name in args.systems:
                scripts[f"{name} {mode}"] = await by_script(
                    name, mode, url, probe_url, min(args.jobs, SLOWLOG_JOBS), f"slow-{name}-{mode}"
                )
    write_report(args, rounds, scripts, idle, str(version), min(args.jobs, SLOWLOG_JOBS))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=6391)
    parser.add_argument("--systems", type=lambda s: s.split(","), default=list(SYSTEMS))
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    parser.add_argument("--tag", default="", help="added to the results file's name")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
