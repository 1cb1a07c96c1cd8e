"""Measure the Redis broker: memory per queued job, commands and round trips per job lifecycle,
and how fast a blocked reserve wakes.

Starts its own ``redis-server`` (no persistence) on a free port, so nothing else is measured.
Prints a Markdown table and writes it, with the date and machine, to
``benchmarks/results/redis-memory-<date>.md``.

    .venv/bin/python -m benchmarks.redis_memory [--jobs 100000]
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

from benchmarks._machine import machine_line
from benchmarks._server import redis_server
from taskit.broker.redis import RedisBroker
from taskit.broker.redis.records import split_record
from taskit.job import Job, Outcome, OutcomeKind, encode_arguments, new_job_id

RESULTS = Path(__file__).parent / "results"
LEASE = 60.0


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


async def main(jobs: int) -> str:
    with redis_server() as url:
        return await measure_all(url, jobs)


async def measure_all(url: str, jobs: int) -> str:
    client = Redis.from_url(url)
    broker = RedisBroker(url, prefix="bench")
    try:
        memory = await measure_memory(broker, client, jobs)
        await client.flushall()
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
        f"{jobs:,} small jobs queued (task name, one e-mail address, one keyword argument).",
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
    print(asyncio.run(main(parser.parse_args().jobs)))
