"""Measure the Redis broker: memory per queued job (at each of ``--depths``), memory per finished
job with the default settings and the steady state it makes at 1,000 jobs/s
(``benchmarks._finished``), commands and round trips per job lifecycle, and how fast a blocked
reserve wakes.

Starts its own ``redis-server`` (no persistence) on a free port (or ``--port``), so nothing else
is measured. Prints a Markdown table and writes it, with the date and machine, to
``benchmarks/results/redis-memory-<date>.md``.

    .venv/bin/python -m benchmarks.redis_memory [--jobs 100000] [--depths 1000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import redis
from redis.asyncio import Redis

from benchmarks._finished import Finished, measure_finished
from benchmarks._machine import machine_line
from benchmarks._server import redis_server
from taskit.broker.redis import RedisBroker
from taskit.broker.redis.records import split_record
from taskit.config import Settings
from taskit.job import Job, Outcome, OutcomeKind, encode_arguments, new_job_id

RESULTS = Path(__file__).parent / "results"
LEASE = 60.0
#: The steady rate the finished-job figures are given at (issue 19, target 6), jobs/s.
RATE = 1000.0
#: The result TTL before issue 19 (a day): the steady state it held, for contrast.
OLD_TTL = 86400.0


def small_job(i: int, queue: str = "default") -> Job:
    """A typical small job: an id, a task name and two short arguments."""
    return Job(
        id=new_job_id(),  # as Task.prepare makes them
        task="app.tasks.send_email",
        queue=queue,
        payload=encode_arguments((f"user{i}@example.com",), {"template": "welcome"}),
        created_at=datetime.now(UTC),
    )


async def used_memory(client: Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def command_calls(client: Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def measure_memory(broker: RedisBroker, client: Redis, jobs: int) -> dict[str, float]:
    await broker.stats(["default"])  # load scripts, create the clients
    before = await used_memory(client)
    batch = 1000
    for start in range(0, jobs, batch):
        await broker.enqueue([small_job(i) for i in range(start, min(start + batch, jobs))])
    after = await used_memory(client)
    keys = broker.keys
    usage = {
        name: await client.memory_usage(key, samples=0) or 0
        for name, key in (
            ("jobs hash", keys.jobs),
            ("FIFO list", keys.fifo("default")),
        )
    }
    record = await client.hget(keys.jobs, (await client.hkeys(keys.jobs))[0]) or b""
    state, spec = split_record(record)
    # A waiting job of the default priority leaves its list by LREM: O(n) in the queue.
    middle = (await client.lindex(keys.fifo("default"), jobs // 2) or b"").decode()
    began = time.perf_counter()
    assert await broker.cancel(middle)
    cancel_ms = (time.perf_counter() - began) * 1000
    [held] = await broker.reserve(["default"], count=1, lease=LEASE, timeout=0)
    await broker.settle([Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.COMPLETE)])
    done = await client.memory_usage(keys.done(held.job.id), samples=0) or 0
    out = {"used_memory delta per queued job": (after - before) / jobs}
    out |= {f"MEMORY USAGE {name} per job": size / jobs for name, size in usage.items()}
    out["encoded job (spec) bytes"] = len(spec)
    out["state string bytes"] = len(state)
    out["MEMORY USAGE of one finished job's done key"] = done
    out[f"cancel of the waiting job in the middle of {jobs:,} (ms, one call)"] = cancel_ms
    return out


async def queued_at_depths(client: Redis, url: str, depths: list[int]) -> dict[int, float]:
    """``used_memory`` delta per queued job with ``depth`` small jobs queued, for each depth (an
    emptied database each time, batches of 1,000)."""
    out: dict[int, float] = {}
    broker = RedisBroker(url, prefix="depth")
    try:
        for depth in depths:
            await client.flushall()
            await broker.stats(["default"])
            before = await used_memory(client)
            for start in range(0, depth, 1000):
                await broker.enqueue([small_job(i) for i in range(start, min(start + 1000, depth))])
            out[depth] = (await used_memory(client) - before) / depth
        await client.flushall()
    finally:
        await broker.close()
    return out


def finished_rows(ends: list[Finished]) -> list[tuple[str, str]]:
    """The table's rows for the finished-job figures (``benchmarks._finished``)."""
    rows: list[tuple[str, str]] = []
    for end in ends:
        rows += [
            (
                f"finished job, {end.label}: used_memory delta per job (B)",
                f"{end.bytes_per_job:,.1f}",
            ),
            (
                f"finished job, {end.label}: MEMORY USAGE of its done key (B)",
                f"{end.done_key_bytes:,}",
            ),
            (f"finished job, {end.label}: its index entry (B)", f"{end.index_bytes_per_job:,.1f}"),
            (f"finished job, {end.label}: record TTL with the defaults (s)", f"{end.ttl:,.0f}"),
            (
                f"finished job, {end.label}: steady state at {RATE:,.0f} jobs/s with the defaults "
                f"(GB; bytes x rate x TTL)",
                f"{end.steady_state(RATE) / 1e9:,.2f}",
            ),
            (
                f"finished job, {end.label}: the same kept a day, the default before issue 19 (GB)",
                f"{end.bytes_per_job * RATE * OLD_TTL / 1e9:,.1f}",
            ),
        ]
    return rows


async def enqueue_script_time(broker: RedisBroker, client: Redis, n: int) -> float:
    """Microseconds Redis spends per single-job enqueue script call (INFO commandstats)."""
    await client.config_resetstat()
    for i in range(n):
        await broker.enqueue([small_job(i, "script-time")])
    stats = await client.info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


async def lifecycle(broker: RedisBroker, client: Redis, n: int, batch: int) -> tuple[float, float]:
    """(round trips per job, Redis commands per job) for enqueue, reserve, settle COMPLETE."""
    queue = f"life-{batch}"
    await client.config_resetstat()
    for _ in range(n // batch):
        await broker.enqueue([small_job(i, queue) for i in range(batch)])
        leases = await broker.reserve([queue], count=batch, lease=LEASE, timeout=0)
        await broker.settle(
            [Outcome(job_id=h.job.id, token=h.token, kind=OutcomeKind.COMPLETE) for h in leases]
        )
    calls = await command_calls(client)
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    trips = calls.get("evalsha", 0) + calls.get("script|load", 0)
    inside = sum(calls.values()) - trips
    return trips / n, inside / n


async def wake_latency(broker: RedisBroker, trials: int) -> list[float]:
    """Seconds from enqueue to a blocked reserve returning the job."""
    waits: list[float] = []
    picked: list[float] = []

    async def consume() -> None:
        await broker.reserve(["wake"], count=1, lease=LEASE, timeout=5)
        picked.append(anyio.current_time())

    for i in range(trials):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.02)
            sent = anyio.current_time()
            await broker.enqueue([small_job(i, "wake")])
        waits.append(picked[-1] - sent)
    return waits


async def main(jobs: int, depths: list[int], finished: int, port: int | None) -> str:
    with redis_server(port=port) as url:
        return await measure_all(url, jobs, depths, finished)


async def measure_all(url: str, jobs: int, depths: list[int], finished: int) -> str:
    client = Redis.from_url(url)
    broker = RedisBroker(url, prefix="bench")
    try:
        memory = await measure_memory(broker, client, jobs)
        await client.flushall()
        at_depth = await queued_at_depths(client, url, depths)
        ends = await measure_finished(url, [small_job(i) for i in range(finished)])
        single = await lifecycle(broker, client, 1000, 1)
        batched = await lifecycle(broker, client, 10_000, 100)
        script_us = await enqueue_script_time(broker, client, 5_000)
        waits = await wake_latency(broker, 100)
        server_version = (await client.info("server"))["redis_version"]
    finally:
        await broker.close()
        await client.aclose()
    waits.sort()
    rows = [(name, f"{value:,.1f}") for name, value in memory.items()]
    rows += [
        (f"used_memory delta per queued job, {d:,} queued (B)", f"{b:,.1f}")
        for d, b in at_depth.items()
    ]
    rows += finished_rows(ends)
    rows += [
        (
            "round trips per job lifecycle (enqueue, reserve, settle; 1 job per call)",
            f"{single[0]:.2f}",
        ),
        (
            "Redis commands per job lifecycle (1 job per call, run inside scripts)",
            f"{single[1]:.1f}",
        ),
        ("round trips per job lifecycle (100 jobs per call)", f"{batched[0]:.2f}"),
        ("Redis commands per job lifecycle (100 jobs per call)", f"{batched[1]:.1f}"),
        ("Redis time per single-job enqueue script call (µs, usec_per_call)", f"{script_us:.1f}"),
        (
            "blocked reserve wake-up after enqueue, median (ms)",
            f"{statistics.median(waits) * 1000:.2f}",
        ),
        (
            "blocked reserve wake-up after enqueue, p99 (ms)",
            f"{waits[int(len(waits) * 0.99) - 1] * 1000:.2f}",
        ),
    ]
    today = datetime.now(UTC).date().isoformat()
    header = [
        f"# Redis broker measurements, {today}",
        "",
        f"{machine_line()} Python {platform.python_version()}; Redis {server_version}; "
        f"redis-py {redis.__version__}.",
        f"{jobs:,} small jobs queued (task name, one e-mail address, one keyword argument); "
        f"{finished:,} of them taken to each end for the finished-job rows, on a broker with "
        f"the default settings (result_ttl {Settings().result_ttl:g} s).",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    table = "\n".join(header + [f"| {name} | {value} |" for name, value in rows]) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"redis-memory-{today}.md").write_text(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument(
        "--depths", default="1000,100000,1000000",
        type=lambda text: [int(part) for part in text.split(",")],
        help="queue depths to measure memory per queued job at (comma-separated)",
    )  # fmt: skip
    parser.add_argument("--finished", type=int, default=20_000, help="jobs per kind of end")
    parser.add_argument("--port", type=int, help="the private redis-server's port (default: free)")
    args = parser.parse_args()
    print(asyncio.run(main(args.jobs, args.depths, args.finished, args.port)))
