"""Limits under kills (catalogue row 27), shared by the short test and a long run.

``taskit worker`` processes drain ``chaos.work`` jobs that each need a slot of one of a few
limit keys (``chaos-limit:k<i>``, concurrency ``per_key``) while a random worker is SIGKILLed
every ``kill_every`` seconds and another spawned. Checked afterwards, from the ledger the
workers write and from Redis:

* never more than ``per_key`` runs of one key at once: the runs ``[start, end]`` of each key
  (the end: the handler's own end line, or its worker's death) never overlap more than that
  (a run's slot is held from before its start line until after its end line, so this is
  weaker than what the broker holds, never stronger);
* no attempt spent on a miss: the attempt numbers of a job's reservations follow one another,
  a gap only where a worker died between them (it had reserved the job, unlogged);
* every slot and line empty once every job has ended, and no job lost (the storm's checker).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from dataclasses import dataclass

import anyio
import msgspec

from taskit import App
from taskit.broker.redis.keys import Keys
from taskit.limits import LimitSpec
from tests.chaos.harness import PREFIX, Cluster, Entry, Report
from tests.chaos.producing import work_jobs

NAME = "chaos-limit"


@dataclass
class LimitStormFigures:
    jobs: int
    kills: int
    seconds: float
    report: Report
    most_at_once: dict[str, int]
    attempt_gaps: list[str]
    leftovers: dict[str, int]

    def line(self) -> str:
        return (f"{self.report.line()} kills={self.kills} seconds={self.seconds:.1f} "
                f"most_at_once={max(self.most_at_once.values(), default=0)}")  # fmt: skip


def key_of(i: int, keys: int) -> str:
    return f"{NAME}:k{i % keys}"


async def run_limit_storm(
    chaos: Cluster, *, jobs: int, keys: int, per_key: int, workers: int, kill_every: float,
    seed: int, max_seconds: float = 300.0,
) -> LimitStormFigures:  # fmt: skip
    rng = random.Random(seed)
    app = App(chaos.url)
    try:
        await app.broker.set_limits({NAME: LimitSpec(concurrency=per_key)})
        live = [chaos.spawn("-c", "8") for _ in range(workers)]
        ids = [f"L{i}" for i in range(jobs)]
        prepared = work_jobs(app, ids, [rng.uniform(0.01, 0.1) for _ in ids])
        limited = [
            msgspec.structs.replace(job, limits=(key_of(i, keys),))
            for i, job in enumerate(prepared)
        ]
        began = time.monotonic()
        acked = [job.id for job in await app.enqueue_many(limited)]
        kills = 0
        next_kill = time.monotonic() + kill_every
        with anyio.fail_after(max_seconds):
            while True:
                stats = (await app.stats(["default"]))["default"]
                if stats.queued + stats.scheduled + stats.running == 0:
                    break
                if time.monotonic() >= next_kill:
                    chaos.kill(live.pop(rng.randrange(len(live))))
                    kills += 1
                    live.append(chaos.spawn("-c", "8", wait=False))
                    next_kill = time.monotonic() + kill_every
                await anyio.sleep(0.05)
        seconds = time.monotonic() - began
    finally:
        await app.close()
    entries = chaos.entries()
    return LimitStormFigures(
        jobs=jobs,
        kills=kills,
        seconds=seconds,
        report=chaos.report(acked),
        most_at_once=most_at_once(entries, chaos.deaths, keys),
        attempt_gaps=attempt_gaps(entries, chaos.deaths),
        leftovers=leftovers(chaos),
    )


def most_at_once(entries: list[Entry], deaths: dict[int, float], keys: int) -> dict[str, int]:
    """Per limit key, the most runs of its jobs that overlapped in time (see the module)."""
    ends = {(e.job_id, e.pid): e.at for e in entries if e.kind == "E"}
    events: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for e in entries:
        if e.kind != "S":
            continue
        end = ends.get((e.job_id, e.pid), deaths.get(e.pid, float("inf")))
        key = key_of(int(e.job_id[1:]), keys)
        events[key] += [(e.at, 1), (end, -1)]
    most: dict[str, int] = {}
    for key, marks in events.items():
        now = peak = 0
        for _, step in sorted(marks):  # at one instant an end (-1) sorts before a start
            now += step
            peak = max(peak, now)
        most[key] = peak
    return most


def attempt_gaps(entries: list[Entry], deaths: dict[int, float]) -> list[str]:
    """Jobs whose reservations skip an attempt number with no worker death in between."""
    by_job: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if e.kind == "R":
            by_job[e.job_id].append(e)
    gaps = []
    for job_id, reserved in by_job.items():
        reserved.sort(key=lambda e: e.attempt)
        if reserved[0].attempt != 1 and not deaths:
            gaps.append(f"{job_id}: first reservation is attempt {reserved[0].attempt}")
        for a, b in itertools.pairwise(reserved):
            died = any(a.at - 1 <= at <= b.at for at in deaths.values())
            if b.attempt - a.attempt > 1 and not died:
                gaps.append(f"{job_id}: attempt {a.attempt} then {b.attempt}")
    return gaps


def leftovers(chaos: Cluster) -> dict[str, int]:
    """What the limits' keys still hold (every one empty when all jobs have ended)."""
    client = chaos.client()
    try:
        sizes = {}
        for key in Keys(PREFIX).limit_keys()[1:]:
            kind = client.type(key).decode()
            size = {"zset": client.zcard, "hash": client.hlen}.get(kind, lambda _: 0)(key)
            if size:
                sizes[key] = int(size)
        return sizes
    finally:
        client.close()
