"""Redis out of memory (catalogue row 22), shared by the short test and the long-mode runner.

A redis-server with a small ``maxmemory`` and ``maxmemory-policy noeviction`` serves several
`taskit worker` processes, while the test process enqueues a mix of jobs (most succeed; some are
retried, some fail, some are dead-lettered) and, in cycles, fills Redis with ballast until it
refuses writes, SIGKILLs a worker (the others must reclaim its leases) and starts another, holds
Redis full for longer than a lease, then frees it again.

Figures: the checker's lost and unjustified duplicates over the acknowledged enqueues. An enqueue
refused with ``BrokerOutOfMemoryError`` is not acknowledged: the producer was told, must find
nothing of that batch stored (``half_stored``), and offers it again later with the same ids, as a
real producer would. ``stuck``: jobs seen, while Redis was full, holding a lease expired for
longer than two reaper intervals and a second (nobody reclaimed them), or unfinished at the end.
Also the most lines naming ``maxmemory`` one worker logged.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import redis
import redis.exceptions

from taskit import App, BrokerOutOfMemoryError, Job
from taskit.broker.redis.keys import Keys
from tests.chaos.harness import PREFIX, Cluster, Report, cluster, consistency_problems

#: Put Redis firmly over maxmemory: a script that has written may grow memory past it.
_OVERSHOOT = "redis.call('DEL', KEYS[1]) redis.call('SET', KEYS[1], string.rep('x', ARGV[1]))"


@dataclass
class MemoryFigures:
    report: Report
    enqueued: int  # jobs offered, counting every refused offer
    refused: int  # jobs in offers refused with BrokerOutOfMemoryError
    half_stored: list[str]  # ids of a refused offer found stored right after it
    stuck: set[str]
    full_cycles: int
    full_seconds: float  # total time Redis was full
    seconds: float
    log_lines: int  # the most lines naming maxmemory one worker logged
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.report.line()} enqueued={self.enqueued} refused={self.refused} "
            f"half_stored={len(self.half_stored)} stuck={len(self.stuck)} "
            f"full_cycles={self.full_cycles} full_seconds={self.full_seconds:.1f} "
            f"seconds={self.seconds:.1f} maxmemory_log_lines={self.log_lines} "
            f"problems={len(self.problems)}"
        )

    def assert_clean(self) -> None:
        self.report.assert_clean()
        assert not self.half_stored, self.line()
        assert not self.stuck, f"stuck {sorted(self.stuck)[:10]}: {self.line()}"
        assert not self.problems, self.problems[:10]


def fill(client: redis.Redis) -> None:
    """Store ballast until Redis refuses a write, then 1 MB more."""
    for n in range(100_000):
        try:
            client.set(f"ballast:{n}", b"x" * 65536)
        except redis.exceptions.OutOfMemoryError:
            break
    client.eval(_OVERSHOOT, 1, "ballast:over", 1 << 20)


def empty(client: redis.Redis) -> None:
    doomed = list(client.scan_iter(match="ballast:*", count=1000))
    for start in range(0, len(doomed), 500):
        client.delete(*doomed[start : start + 500])


def overdue(client: redis.Redis, slack: float) -> set[str]:
    """Jobs whose lease expired more than ``slack`` seconds ago (on the server's clock)."""
    keys = Keys(PREFIX)
    seconds, micros = client.time()
    cutoff = (seconds + micros / 1e6 - slack) * 1000
    return {m.decode() for m in client.zrangebyscore(keys.leases("default"), "-inf", cutoff)}


def mixed_jobs(app: App, rng: random.Random, first: int, n: int) -> list[Job]:
    """``n`` jobs, ids ``m<first>``...: mostly short work; some flaky (retried once, then ok),
    some dead-lettered (always failing), some failed at once."""
    work, flaky = app.remote("chaos.work"), app.remote("chaos.flaky")
    jobs = []
    for i in range(first, first + n):
        key = f"m{i}"
        roll = rng.random()
        if roll < 0.15:
            jobs.append(flaky.options(job_id=key).prepare(key, 1))  # retried, then ok
        elif roll < 0.2:
            jobs.append(flaky.options(job_id=key).prepare(key, 9))  # dead-lettered
        elif roll < 0.25:
            jobs.append(flaky.options(job_id=key).prepare(key, -1))  # failed
        else:
            jobs.append(work.options(job_id=key).prepare(key, rng.uniform(0.05, 0.5)))
    return jobs


async def run_memory(
    directory: Path,
    *,
    jobs: int,
    cycles: int,
    full_seconds: float = 3.0,
    free_seconds: float = 1.5,
    workers: int = 3,
    seed: int = 20,
    maxmemory: str = "24mb",
    max_seconds: float = 600.0,
) -> MemoryFigures:
    rng = random.Random(seed)
    redis_args = ("--maxmemory", maxmemory, "--maxmemory-policy", "noeviction")
    with cluster(directory, *redis_args) as chaos:
        app = App(chaos.url)
        client = chaos.client()
        try:
            for _ in range(workers):
                chaos.spawn("-c", "8")
            began = time.monotonic()
            # Batches of 20 spread over the free periods, faster than the workers drain them:
            # a backlog waits whenever Redis fills, and some batches meet it full.
            pace = cycles * free_seconds / max(jobs / 20, 1)
            run = _Run(app, chaos, client, rng, jobs, pace)
            with anyio.fail_after(max_seconds):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run.produce)
                    await run.pressure(cycles, full_seconds, free_seconds)
                await run.drain()
            seconds = time.monotonic() - began
            problems = consistency_problems(client, ["default"])
        finally:
            client.close()
            await app.close()
        lines = max((sum("maxmemory" in ln for ln in w.lines) for w in chaos.workers), default=0)
        report = chaos.report(run.acked)
        unfinished = {i for i in run.acked if report.ended.get(i) is None}
        return MemoryFigures(
            report=report, enqueued=run.asked, refused=run.refused, half_stored=run.half_stored,
            stuck=run.stuck | unfinished, full_cycles=cycles, full_seconds=run.full_for,
            seconds=seconds, log_lines=lines, problems=problems,
        )  # fmt: skip


class _Run:
    """The producer and the memory pressure of one run."""

    def __init__(
        self,
        app: App,
        chaos: Cluster,
        client: redis.Redis,
        rng: random.Random,
        jobs: int,
        pace: float,
    ) -> None:
        self.app, self.chaos, self.client, self.rng = app, chaos, client, rng
        self.jobs, self.pace = jobs, pace
        self.acked: list[str] = []
        self.half_stored: list[str] = []
        self.stuck: set[str] = set()
        self.asked = 0  # jobs offered, counting each refused offer
        self.refused = 0  # jobs in refused offers
        self.full_for = 0.0

    async def produce(self) -> None:
        """Enqueue the jobs in batches of 20, one every ``pace`` seconds. A batch refused for
        want of memory must have stored nothing; it is offered again (same ids) until stored."""
        first = 0
        while first < self.jobs:
            batch = mixed_jobs(self.app, self.rng, first, min(20, self.jobs - first))
            while True:
                self.asked += len(batch)
                try:
                    stored = await self.app.enqueue_many(batch)
                except BrokerOutOfMemoryError:
                    self.refused += len(batch)
                    for job in batch:
                        if await self.app.get_job(job.id) is not None:
                            self.half_stored.append(job.id)
                    await anyio.sleep(0.1)
                    continue
                self.acked += [j.id for j in stored]
                break
            first += len(batch)
            await anyio.sleep(self.pace)

    async def pressure(self, cycles: int, full_seconds: float, free_seconds: float) -> None:
        """Fill Redis, SIGKILL a worker (its leases must be reclaimed while Redis is full) and
        start another, hold Redis full (watching for expired leases nobody reclaims), free it."""
        slack = 2 * self.chaos.reaper + 1.0
        for _ in range(cycles):
            await anyio.sleep(free_seconds)
            await anyio.to_thread.run_sync(fill, self.client)
            full_since = time.monotonic()
            live = [w for w in self.chaos.workers if w.proc.poll() is None]
            self.chaos.kill(self.rng.choice(live))
            self.chaos.spawn("-c", "8", wait=False)
            while time.monotonic() - full_since < full_seconds:
                self.stuck |= overdue(self.client, slack)
                await anyio.sleep(0.1)
            await anyio.to_thread.run_sync(empty, self.client)
            self.full_for += time.monotonic() - full_since

    async def drain(self) -> None:
        """Wait until every stored job has ended."""
        while True:
            stats = (await self.app.stats(["default"]))["default"]
            if stats.queued + stats.scheduled + stats.running == 0:
                return
            await anyio.sleep(0.1)


def table_row(f: MemoryFigures) -> str:
    """Row 22 of the figures table of docs/reliability.md."""
    r = f.report
    cells = [
        20, "maxmemory + noeviction, full at times (3 workers x 8, a SIGKILL each time)", "none",
        "2 s", "0.5 s", r.acked, len(r.lost), f"{len(r.dup)} ({r.dup_pct:.2f}%)",
        len(r.unjustified),
        f"stuck {len(f.stuck)}; {f.full_cycles} cycles, full {f.full_seconds:.0f} s of "
        f"{f.seconds:.0f} s; enqueues refused (nothing stored, offered again) {f.refused}, "
        f"half-stored {len(f.half_stored)}; max attempts {r.max_attempts}; at most "
        f"{f.log_lines} maxmemory lines per worker",
    ]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


async def _main(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="taskit-chaos-memory-"))
    figures = await run_memory(
        directory, jobs=args.jobs, cycles=args.cycles, full_seconds=args.full_seconds,
        free_seconds=args.free_seconds,
    )  # fmt: skip
    print(figures.line())
    print(table_row(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Row 22 alone: " + __doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--full-seconds", type=float, default=5.0)
    parser.add_argument("--free-seconds", type=float, default=3.0)
    anyio.run(_main, parser.parse_args())
