"""Retention (catalogue row 17), shared by the short test and the long-mode runner.

Jobs go through the real scripts in batches (enqueue, reserve, complete) with a 1 s result TTL.
While they run, live records must carry no TTL and finished ones must; once the results have
expired, Redis memory must be back at its baseline (plus the fixed keys and the per-minute counts
hashes, kept a day) and no key of a job may be left over: the index of finished jobs expires with
what it lists.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
from redis.asyncio import Redis

from taskit.broker.redis import RedisBroker
from taskit.job import Job, Outcome, OutcomeKind, encode_arguments

RESULT_TTL = 1.0
#: Keys that stay once every job is gone: counters, the queue set, per-queue totals and wake-ups.
FIXED = {"seq", "queues", "epoch", "q:default:totals", "q:default:wake"}
#: Keys that stay for a day, by design: the per-minute counts (``taskit.broker.browse``).
KEPT = "counts:"


@dataclass
class RetentionFigures:
    jobs: int
    baseline: int
    peak: int
    after: int
    live_ttls: int  # live keys seen with a TTL (must be 0)
    done_without_ttl: int  # finished keys seen without a TTL (must be 0)
    orphans: list[str]
    seconds: float

    @property
    def growth(self) -> int:
        return self.after - self.baseline

    def line(self) -> str:
        return (
            f"jobs={self.jobs} baseline={self.baseline} peak={self.peak} after={self.after} "
            f"growth={self.growth} B live_ttls={self.live_ttls} orphans={len(self.orphans)} "
            f"jobs/s={self.jobs / self.seconds:.0f}"
        )


def _job(i: int) -> Job:
    return Job(id=uuid.uuid4().hex, task="app.tasks.send_email", queue="default",
               payload=encode_arguments((f"user{i}@example.com",), {"template": "welcome"}),
               created_at=datetime.now(UTC))  # fmt: skip


async def _memory(client: Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def run_retention(url: str, *, jobs: int, batch: int = 1000) -> RetentionFigures:
    broker = RedisBroker(url, result_ttl=RESULT_TTL)
    client = Redis.from_url(url)
    keys = broker.keys
    try:
        await broker.stats(["default"])  # scripts loaded, epoch written, clients made
        baseline = await _memory(client)
        peak = baseline
        live_ttls = done_without_ttl = 0
        began = time.monotonic()
        for start in range(0, jobs, batch):
            await broker.enqueue([_job(i) for i in range(start, min(start + batch, jobs))])
            for key in (keys.jobs,):
                live_ttls += await client.pttl(key) != -1
            leases = await broker.reserve(["default"], count=batch, lease=60.0, timeout=0)
            await broker.settle([Outcome(job_id=h.job.id, token=h.token,
                                         kind=OutcomeKind.COMPLETE) for h in leases])  # fmt: skip
            done_without_ttl += await client.pttl(keys.done(leases[-1].job.id)) < 0
            peak = max(peak, await _memory(client))
        seconds = time.monotonic() - began
        await anyio.sleep(RESULT_TTL + 0.5)
        left: list[str] = []
        async for raw in client.scan_iter(match=keys.pattern(), count=1000):  # expires lazily too
            left.append(raw.decode())
        counts = [k for k in left if k.startswith(f"{keys.tag}:{KEPT}")]
        for _ in range(50):  # the active expiry cycle finishes what the scan did not touch
            if await client.dbsize() <= len(FIXED) + len(counts):
                break
            await anyio.sleep(0.1)
        left = [k.decode() async for k in client.scan_iter(match=keys.pattern(), count=1000)]
        orphans = [k for k in left if k.removeprefix(keys.tag + ":") not in FIXED
                   and not k.startswith(f"{keys.tag}:{KEPT}")]  # fmt: skip
        after = await _memory(client)
        for _ in range(30):  # Redis shrinks its emptied key tables a step per cron tick
            if after - baseline < 64 * 1024:
                break
            await anyio.sleep(0.1)
            after = await _memory(client)
        return RetentionFigures(jobs, baseline, peak, after, live_ttls, done_without_ttl,
                                orphans, seconds)  # fmt: skip
    finally:
        await broker.close()
        await client.aclose()
