"""The measurements, each run the same way for every system against a freshly flushed Redis.

Every scenario returns named figures (see README.md for what each means); a system that lacks an
operation raises ``NotSupported`` and the runner shows n/a.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from benchmarks._floor import ping_rate
from benchmarks._server import Counters, counters
from benchmarks._workers import Drained, WorkerGroup
from benchmarks.peers.base import System

__all__ = ["SCENARIOS", "Bench", "Sizes"]

Figures = dict[str, float]
WARMUP = 100
#: Jobs a second any system is assumed to reach at least, to bound every wait.
FLOOR_RATE = 50
#: Seconds a worker process may take to start.
STARTUP = 30.0
#: Delay of the "delayed" jobs: far enough that none comes due during a run.
FAR = 3600.0
#: Idle time between two latency probes, so the worker is back to waiting.
LATENCY_GAP = 0.005
_ids = itertools.count()


@dataclass(frozen=True)
class Sizes:
    """How many jobs each scenario uses."""

    enqueue: int
    batch: int
    drain: int
    latency: int
    depths: tuple[int, ...]
    delayed: int
    procs: tuple[int, ...]


@dataclass
class Bench:
    """One system's scenario context: the Redis URL, a runner client and the sizes."""

    cls: type[System]
    url: str
    client: Redis
    sizes: Sizes

    @asynccontextmanager
    async def producer(self) -> AsyncIterator[System]:
        await self.client.flushall()
        system = self.cls(self.url)
        await system.open()
        try:
            yield system
        finally:
            await system.close()

    def workers(self, system: System, probe: str, expect: int = 0) -> WorkerGroup:
        run = f"{system.name}-{next(_ids)}"
        return WorkerGroup(system.worker_command(), run, self.url, probe, expect)

    async def drain(
        self, system: System, jobs: int, procs: int = 1
    ) -> tuple[Drained, Counters, Counters]:
        """Start ``procs`` workers on jobs already queued; wait until ``jobs`` ran. Returns the
        probe's report and the server counters just before the workers started and just after
        the last job reported (before the workers are stopped)."""
        group = self.workers(system, "final" if procs == 1 else "periodic", jobs)
        before = await counters(self.client)
        group.start(procs)
        try:
            timeout = STARTUP + jobs / FLOOR_RATE
            if procs == 1:
                drained = await group.wait_done(self.client, timeout)
            else:
                drained = await group.wait_count(self.client, jobs, timeout)
            return drained, before, await counters(self.client)
        finally:
            group.stop()


async def _timed(count: int, call: Callable[[], Awaitable[None]]) -> float:
    """Jobs a second over ``count`` awaited calls."""
    began = time.perf_counter()
    for _ in range(count):
        await call()
    return count / (time.perf_counter() - began)


async def enqueue_async(b: Bench) -> Figures:
    async with b.producer() as system:
        for _ in range(WARMUP):
            await system.enqueue()
        before = await counters(b.client)
        rate = await _timed(b.sizes.enqueue, system.enqueue)
        trips, cmds, _ = (await counters(b.client)).minus(before)
    n = b.sizes.enqueue
    floor = await ping_rate(b.url, n)  # in the same moment: the rate no enqueue can pass
    return {
        "enqueue_rate": rate,
        "enqueue_trips": trips / n,
        "enqueue_cmds": cmds / n,
        "ping_rate": floor,
        "enqueue_of_floor": rate / floor,
    }


async def enqueue_sync(b: Bench) -> Figures:
    async with b.producer() as system:

        def spell() -> float:
            for _ in range(WARMUP):
                system.enqueue_blocking()
            began = time.perf_counter()
            for _ in range(b.sizes.enqueue):
                system.enqueue_blocking()
            return b.sizes.enqueue / (time.perf_counter() - began)

        return {"enqueue_sync_rate": await asyncio.to_thread(spell)}


async def enqueue_batch(b: Bench) -> Figures:
    async with b.producer() as system:
        await system.enqueue_batch(1000)
        began = time.perf_counter()
        for start in range(0, b.sizes.batch, 1000):
            await system.enqueue_batch(min(1000, b.sizes.batch - start))
        return {"batch_rate": b.sizes.batch / (time.perf_counter() - began)}


def _drain_figures(prefix: str, drained: Drained, before: Counters, after: Counters) -> Figures:
    n = drained.jobs
    # The measuring itself: the probe's SET and RPUSH, the runner's BLPOPs, GET and INFO.
    probe_calls = {"set": 1, "rpush": 1, "blpop": drained.waits, "get": 1}
    trips, cmds, calls = after.minus(before, own_reads=drained.waits + 4)
    cmds -= sum(min(calls.get(k, 0), v) for k, v in probe_calls.items())
    figures = {f"{prefix}_rate": (n - 1) / drained.seconds}
    if drained.cpu is not None:
        figures[f"{prefix}_cpu_us"] = drained.cpu / (n - 1) * 1e6
    if drained.hwm_kb is not None:
        figures[f"{prefix}_rss_mb"] = drained.hwm_kb / 1024
    figures[f"{prefix}_trips"] = trips / n
    figures[f"{prefix}_cmds"] = cmds / n
    return figures


async def drain_async(b: Bench, *, sync_job: bool = False) -> Figures:
    prefix = "drain_sync" if sync_job else "drain"
    async with b.producer() as system:
        empty = await counters(b.client)
        await system.fill(b.sizes.drain, sync_job=sync_job)
        drained, before, after = await b.drain(system, b.sizes.drain)
    figures = _drain_figures(prefix, drained, before, after)
    if not sync_job:
        figures["queued_bytes_per_job"] = (before.used_memory - empty.used_memory) / b.sizes.drain
    return figures


async def drain_sync(b: Bench) -> Figures:
    return await drain_async(b, sync_job=True)


async def latency(b: Bench) -> Figures:
    async with b.producer() as system:
        group = b.workers(system, "none")
        group.start()
        try:
            await system.enqueue_stamped(time.monotonic())
            await group.next_latency(b.client, STARTUP)
            waits = []
            for i in range(WARMUP // 5 + b.sizes.latency):
                await asyncio.sleep(LATENCY_GAP)
                await system.enqueue_stamped(time.monotonic())
                wait = await group.next_latency(b.client, 10.0)
                if i >= WARMUP // 5:
                    waits.append(wait)
        finally:
            group.stop()
    cuts = statistics.quantiles(waits, n=100, method="inclusive")
    return {"latency_p50_ms": cuts[49] * 1000, "latency_p99_ms": cuts[98] * 1000}


async def depths(b: Bench) -> Figures:
    figures: Figures = {}
    for depth in b.sizes.depths:
        async with b.producer() as system:
            empty = await counters(b.client)
            await system.fill(depth)
            full = await counters(b.client)
            figures[f"depth_{depth}_bytes_per_job"] = (full.used_memory - empty.used_memory) / depth
            figures[f"depth_{depth}_enqueue_rate"] = await _timed(b.sizes.enqueue, system.enqueue)
            jobs = min(b.sizes.drain, depth + b.sizes.enqueue)
            drained, _, _ = await b.drain(system, jobs)
            figures[f"depth_{depth}_drain_rate"] = (jobs - 1) / drained.seconds
    return figures


async def delayed(b: Bench) -> Figures:
    async with b.producer() as system:
        await system.fill(b.sizes.delayed, delay=FAR)
        rate = await _timed(b.sizes.enqueue, system.enqueue)
        jobs = min(b.sizes.drain, b.sizes.enqueue)
        drained, _, _ = await b.drain(system, jobs)
    return {"delayed_enqueue_rate": rate, "delayed_drain_rate": (jobs - 1) / drained.seconds}


async def processes(b: Bench) -> Figures:
    figures: Figures = {}
    for procs in b.sizes.procs:
        async with b.producer() as system:
            await system.fill(b.sizes.drain)
            drained, _, _ = await b.drain(system, b.sizes.drain, procs)
            figures[f"procs_{procs}_drain_rate"] = (b.sizes.drain - 1) / drained.seconds
    return figures


SCENARIOS = {
    "enqueue": enqueue_async,
    "enqueue_sync": enqueue_sync,
    "batch": enqueue_batch,
    "drain": drain_async,
    "drain_sync": drain_sync,
    "latency": latency,
    "depth": depths,
    "delayed": delayed,
    "procs": processes,
}
