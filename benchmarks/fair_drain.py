"""What fair queues cost: a 20k-job drain through the Redis broker, reserve and settle only.

    python benchmarks/fair_drain.py --url redis://127.0.0.1:6379/9 [--groups 0 100] [--runs 5]

Each run enqueues ``--jobs`` jobs (in batches of 1,000) to a fresh prefix, then drains them with
``reserve(count=50)`` and one ``settle`` per batch, as a worker's fetcher and settler do, and
prints the drain rate (jobs/s, the median of ``--runs``). ``--groups 0`` is a queue without
groups (the hot path: what every existing queue pays); ``--groups N`` spreads the jobs over N
groups, enqueued round-robin. Run it from another checkout (``PYTHONPATH``) for a before/after
comparison: the script only uses the Broker contract.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime

import anyio
import msgspec
import redis

from taskit.broker.redis import RedisBroker
from taskit.job import Job, Outcome, OutcomeKind, encode_arguments

BATCH = 1_000


def jobs(n: int, groups: int) -> list[Job]:
    now = datetime.now(UTC)
    made = [Job(id=uuid.uuid4().hex, task="bench", queue="drain",
                payload=encode_arguments((i,), {}), created_at=now)
            for i in range(n)]  # fmt: skip
    if groups:
        # A checkout without Job.group fails here: run it with --groups 0 only.
        made = [msgspec.structs.replace(j, group=f"g{i % groups}") for i, j in enumerate(made)]
    return made


async def one_run(url: str, n: int, groups: int) -> float:
    prefix = f"fair-bench-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url, prefix=prefix)
    try:
        batch = jobs(n, groups)
        for i in range(0, n, BATCH):
            await broker.enqueue(batch[i : i + BATCH])
        started = time.perf_counter()
        done = 0
        while leases := await broker.reserve(["drain"], count=50, lease=60.0, timeout=0):
            outcomes = [Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE)
                        for lease in leases]  # fmt: skip
            await broker.settle(outcomes)
            done += len(leases)
        elapsed = time.perf_counter() - started
        assert done == n, (done, n)
        return n / elapsed
    finally:
        await broker.close()
        client = redis.Redis.from_url(url)
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
        if doomed:
            client.delete(*doomed)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--groups", type=int, nargs="+", default=[0, 100])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for groups in args.groups:
        rates = [anyio.run(one_run, args.url, args.jobs, groups) for _ in range(args.runs)]
        print(f"groups={groups:<5} drain {statistics.median(rates):>8.0f} jobs/s "
              f"(median of {args.runs}; min {min(rates):.0f}, max {max(rates):.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
