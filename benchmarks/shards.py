"""One App over 1, 2 and 3 Redis Cluster masters with shards to match (issue 17): Redis CPU per
master per job, commands per job and throughput.

Starts three private Redis Clusters from Debian's ``redis-server`` (``benchmarks._cluster``: 1,
2 and 3 masters, no replicas, equal slot ranges, loopback ports, no persistence) and a plain
``redis-server`` the probes report to (so the clusters' counters hold only taskit's work). Each
configuration, as ``(masters, shards)``: (1, 1), (2, 2), (3, 3), and (3, 1) for contrast (the
old layout: one slot, so one master, however many there are). For each, in three timed phases:

* **single**: ``--producers`` processes (``benchmarks._producer``), each with ``--tasks``
  coroutines awaiting one ``noop.enqueue()`` after another, ``--single`` jobs in all;
* **batch**: the same processes' ``app.enqueue_many`` of 1,000 jobs a call, ``--batch`` in all;
* **drain**: ``--workers`` ``taskit worker`` processes (``-c --concurrency``) run every job
  queued (the warm-up ones too); each job calls ``probe.tally()``, the probes' counts must sum
  to exactly the jobs enqueued, and the queue's stats must then say 0 queued and that many
  completed, or the run stops.

Each phase reads ``INFO`` of every master before and after: Redis CPU (``used_cpu_user +
used_cpu_sys``), calls by command (``INFO`` left out) and read events (round trips); each
master's voluntary context switches (``/proc/<pid>/status``: sleeps in ``epoll_wait``, each
followed by a wake-up); the clients' own CPU; and the machine's busy cores (``/proc/stat``:
other work on the machine counts too). Per phase: jobs/s (enqueue: jobs over the wall time from
the producers' common start to the last one's end; drain: ``(n - 1)`` over the first to the
last job's end, as ``benchmarks.run`` counts it), Redis CPU µs per job (all masters), the
clients' µs per job, commands, round trips and wake-ups per job, each master's share of the
Redis CPU and max share / min share. A drain's counters are read from the first job counted to
the last (the workers' start-up left out), per job counted in between. Over a job's life (its
enqueue plus its drain), the report also gives the jobs/s at which the busiest master would use
one whole core: the ceiling when clients are not the limit.

Ratios are taken within one run (the configurations take turns) and the report gives the median
over ``--runs`` (3) runs, range in brackets. Writes ``benchmarks/results/shards-<date>[-quick]``
``[-<tag>].md`` and ``.json`` with the date, machine and versions.

    .venv/bin/python -m benchmarks.shards [--runs 3] [--quick] [--configs 1:1,2:2,3:3,3:1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from benchmarks._cluster import BenchCluster, NodeCounters
from benchmarks._producer import WARMUP
from benchmarks._server import redis_server
from benchmarks._shards_report import PHASES, Phase, config_name, report
from benchmarks._workers import WorkerGroup
from benchmarks.peers.taskit_app import make_app
from benchmarks.probe import probe_key

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bench"
QUEUE = "default"
#: (masters, shards): shards to match 1, 2, 3 masters, then 3 masters in the old layout.
CONFIGS = "1:1,2:2,3:3,3:1"
#: Seconds the clusters are watched idle before the runs and again after them.
IDLE = 5.0
#: A producer that has not said it is ready (imports, connections, warm-up) in this long failed;
#: one enqueuing gets this long or a second per 100 jobs, whichever is more.
READY_TIMEOUT = 60.0


def busy_core_seconds() -> float:
    """The machine's busy CPU time so far (all cores, seconds), from ``/proc/stat``."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def phase(
    jobs: int, seconds: float, before: list[NodeCounters], after: list[NodeCounters], busy: float
) -> Phase:
    return Phase(
        jobs=jobs,
        seconds=seconds,
        cpu=[a.cpu - b.cpu for a, b in zip(after, before, strict=True)],
        calls=[a.calls_since(b) for a, b in zip(after, before, strict=True)],
        reads=[a.reads - b.reads - 1 for a, b in zip(after, before, strict=True)],
        sleeps=[a.sleeps - b.sleeps for a, b in zip(after, before, strict=True)],
        busy_cores=busy / seconds,
        sys=[a.sys - b.sys for a, b in zip(after, before, strict=True)],
        writes=[a.writes - b.writes - 1 for a, b in zip(after, before, strict=True)],
        net_in=[a.net_in - b.net_in for a, b in zip(after, before, strict=True)],
        preempted=[a.preempted - b.preempted for a, b in zip(after, before, strict=True)],
    )


@contextmanager
def producers(
    url: str, mode: str, jobs: int, opts: argparse.Namespace
) -> Iterator[list[subprocess.Popen[str]]]:
    """``--producers`` producer processes, each ready (warmed up) and waiting for its go line;
    killed by pid on leaving if still running."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[str]] = []
    try:
        for k in range(opts.producers):
            share = jobs // opts.producers + (k < jobs % opts.producers)
            argv = [sys.executable, "-m", "benchmarks._producer", url, mode, str(share),
                    str(opts.tasks)]  # fmt: skip
            procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE))  # fmt: skip
        for proc in procs:
            _line(proc, "warmup", READY_TIMEOUT)
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _line(proc: subprocess.Popen[str], key: str, timeout: float) -> dict[str, float]:
    """The producer's next line, which must hold ``key``; RuntimeError when it exits or says
    nothing for ``timeout`` seconds."""
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], timeout)[0]:
        raise RuntimeError(f"a producer said nothing for {timeout:.0f} s (waiting for {key!r})")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a producer exited with {proc.wait()} before saying {key!r}")
    said: dict[str, float] = json.loads(line)
    if key not in said:
        raise RuntimeError(f"a producer said {line!r}, not {key!r}")
    return said


def enqueue_phase(
    cluster: BenchCluster, url: str, mode: str, jobs: int, opts: argparse.Namespace
) -> tuple[Phase, int]:
    """Run one enqueue phase; the phase and the jobs enqueued (warm-up ones included)."""
    with producers(url, mode, jobs, opts) as procs:
        before, busy, began = cluster.counters(), busy_core_seconds(), time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        done = [_line(proc, "jobs", max(READY_TIMEOUT, jobs / 100)) for proc in procs]
        seconds = time.perf_counter() - began
        after, busy = cluster.counters(), busy_core_seconds() - busy
    timed = int(sum(d["jobs"] for d in done))
    if timed != jobs:
        raise RuntimeError(f"{mode}: the producers enqueued {timed} jobs, not {jobs}")
    result = phase(jobs, seconds, before, after, busy)
    result.client_us = sum(d["cpu"] for d in done) / jobs * 1e6
    return result, jobs + len(procs) * WARMUP


async def drain_phase(cluster: BenchCluster, url: str, probe_url: str, run: str, expect: int,
                      opts: argparse.Namespace) -> Phase:  # fmt: skip
    """Start the workers, wait until their probes counted ``expect`` jobs; check it was exactly
    that many, and that the queue agrees. CPU (Redis's and the workers') and commands are
    taken from the first count seen to the last, over the jobs counted in between (the
    workers' start-up left out); the rate over every job, from the probes' times."""
    argv = [sys.executable, "-m", "taskit", "worker", "benchmarks.peers.taskit_app:app",
            "-c", str(opts.concurrency), "--log-level", "warning"]  # fmt: skip
    group = WorkerGroup(argv, run, probe_url, "periodic")
    group.env["BENCH_APP_URL"] = url
    probe = Redis.from_url(probe_url)
    deadline = time.monotonic() + max(120.0, expect / 100)
    try:
        group.start(opts.workers)
        counted, reports = 0, list[dict[str, float]]()
        while counted == 0:
            counted, reports = await _next_count(probe, run, group, deadline)
        first, workers = counted, _cpu_of(group)
        before, busy, began = cluster.counters(), busy_core_seconds(), time.perf_counter()
        while counted < expect:
            counted, reports = await _next_count(probe, run, group, deadline)
        seconds = time.perf_counter() - began
        after, busy = cluster.counters(), busy_core_seconds() - busy
        workers = _cpu_of(group) - workers
        await asyncio.sleep(0.3)  # a second run of a job would show in the next report
        await check_exact(probe, url, run, expect)
    finally:
        group.stop()
        await probe.aclose()
    if counted == first:
        raise RuntimeError(f"all {expect} jobs ran before the first look: too few to measure")
    result = phase(counted - first, seconds, before, after, busy)
    result.span = max(r["last"] for r in reports) - min(r["first"] for r in reports if r["count"])
    result.span_jobs = expect
    result.client_us = workers / (counted - first) * 1e6
    return result


async def _next_count(
    probe: Redis, run: str, group: WorkerGroup, deadline: float
) -> tuple[int, list[dict[str, float]]]:
    """``_counted`` 50 ms from now; TimeoutError past ``deadline``, RuntimeError (with its
    log) if a worker exited."""
    await asyncio.sleep(0.05)
    if time.monotonic() > deadline:
        raise TimeoutError("the workers did not run every job in time")
    group.check_alive()
    return await _counted(probe, run)


async def _counted(probe: Redis, run: str) -> tuple[int, list[dict[str, float]]]:
    """The jobs the workers' probes counted so far, and their reports."""
    keys = [k async for k in probe.scan_iter(match=probe_key(run, "*"))]
    reports = [json.loads(v) for v in await probe.mget(keys) if v] if keys else []
    return sum(int(r["count"]) for r in reports), reports


def _cpu_of(group: WorkerGroup) -> float:
    """The worker processes' CPU seconds so far (utime + stime, every thread)."""
    total = 0
    for proc in group.procs:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def check_exact(probe: Redis, url: str, run: str, expect: int) -> None:
    counted, _ = await _counted(probe, run)
    app = make_app(url)
    try:
        stats = (await app.stats([QUEUE]))[QUEUE]
    finally:
        await app.close()
    if counted != expect or stats.completed != expect or stats.queued or stats.running:
        raise RuntimeError(f"{expect} jobs enqueued, but the probes counted {counted} and the "
                           f"queue says {stats}")  # fmt: skip


def one_config(cluster: BenchCluster, shards: int, probe_url: str, run: str,
               opts: argparse.Namespace) -> dict[str, Phase]:  # fmt: skip
    cluster.flushall()
    url = cluster.url(PREFIX, shards)
    single, queued = enqueue_phase(cluster, url, "single", opts.single, opts)
    batch, more = enqueue_phase(cluster, url, "batch", opts.batch, opts)
    drain = asyncio.run(drain_phase(cluster, url, probe_url, run, queued + more, opts))
    return {"single": single, "batch": batch, "drain": drain}


def idle_rates(clusters: dict[int, BenchCluster], seconds: float = IDLE) -> dict[int, list[float]]:
    """Each master's CPU seconds a second over ``seconds`` with no clients (only the two
    ``INFO`` that read it): its own cost (serverCron, clusterCron and the cluster bus, timer
    wake-ups), which a phase's figures hold besides taskit's work. Every cluster is watched
    over the same window."""
    before = {m: c.counters() for m, c in clusters.items()}
    time.sleep(seconds)
    return {
        m: [(a.cpu - b.cpu) / seconds for a, b in zip(c.counters(), before[m], strict=True)]
        for m, c in clusters.items()
    }


def _baseline(
    before: dict[int, list[float]], after: dict[int, list[float]]
) -> dict[int, list[float]]:
    """Per master, the larger of its idle rates before and after the runs (the larger, so that
    the net figures take off at least what idling cost)."""
    return {m: [max(pair) for pair in zip(before[m], after[m], strict=True)] for m in before}


def parse_configs(text: str) -> list[tuple[int, int]]:
    """``"1:1,3:3"`` as ``[(1, 1), (3, 3)]``; SystemExit naming a bad item."""
    configs = []
    for item in text.split(","):
        masters, _, shards = item.partition(":")
        if not (masters.isdigit() and shards.isdigit() and 1 <= int(masters) <= 16
                and 1 <= int(shards) <= 64):  # fmt: skip
            raise SystemExit(f"--configs: {item!r} is not masters:shards (1..16, 1..64)")
        configs.append((int(masters), int(shards)))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: a check")
    parser.add_argument(
        "--single", type=int, default=None, help="single enqueues (20,000; quick 1,000)"
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="batch-enqueued jobs (100,000; quick 5,000)"
    )
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=4, help="coroutines per producer (single)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--configs", default=CONFIGS, help=f"masters:shards,... ({CONFIGS})")
    parser.add_argument("--tag", default="", help="added to the result files' names")
    opts = parser.parse_args()
    configs = parse_configs(opts.configs)
    command = " ".join(sys.argv[1:])
    opts.runs = opts.runs or (1 if opts.quick else 3)
    opts.single = opts.single or (1000 if opts.quick else 20_000)
    opts.batch = opts.batch or (5000 if opts.quick else 100_000)
    runs: list[dict[str, dict[str, Phase]]] = []
    with ExitStack() as stack:
        probe_url = stack.enter_context(redis_server())
        clusters = {
            m: stack.enter_context(BenchCluster(m)) for m in sorted({m for m, _ in configs})
        }
        load = os.getloadavg()[0]
        idle_before = idle_rates(clusters)
        for i in range(opts.runs):
            runs.append({})
            for masters, shards in configs:
                name = config_name(masters, shards)
                print(f"run {i + 1}/{opts.runs}: {masters} masters, {shards} shards", flush=True)
                got = one_config(clusters[masters], shards, probe_url, f"{name}-{i}", opts)
                runs[-1][name] = got
                print("  " + ", ".join(f"{p} {got[p].rate:,.0f}/s {got[p].redis_us:.1f} µs"
                                       for p in PHASES), flush=True)  # fmt: skip
        idle_after = idle_rates(clusters)
    idle = {"before": idle_before, "after": idle_after}
    baseline = _baseline(idle_before, idle_after)
    for run in runs:
        for masters, shards in configs:
            for measured in run[config_name(masters, shards)].values():
                measured.idle = baseline[masters]
    when = datetime.now(UTC)
    args = {**vars(opts), "command": command, "idle_seconds": IDLE}
    text, data = report(when, runs, configs, args, idle, (load, os.getloadavg()[0]))
    print(text)
    RESULTS.mkdir(exist_ok=True)
    tag = ("-quick" if opts.quick else "") + (f"-{opts.tag}" if opts.tag else "")
    stem = RESULTS / f"shards-{when:%Y-%m-%d}{tag}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {stem}.md and .json")


if __name__ == "__main__":
    main()
