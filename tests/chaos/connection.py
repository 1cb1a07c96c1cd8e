"""Faults of the connection to Redis (catalogue rows 23, 24 and 30), shared by the short tests
and the long mode (``python -m tests.chaos.connection``).

* Row 23, Redis frozen: redis-server is SIGSTOPped for longer than a lease while a producer
  enqueues and two workers run jobs, then SIGCONTed. Every producer call must end within its
  bound (``broker_timeout``); the workers survive.
* Row 24, lost replies: workers and the producer reach Redis through ``tests._proxy`` proxies
  that drop a connection after a script call ran, before its reply, at random. The producer
  retries as docs/guide.md says (same job ids; an unknown outcome is looked up first).
* Row 30, reclaim race: a worker holding many leases is killed while ten idle workers sweep for
  expired leases every 50 ms: each lease must be taken over by exactly one of them.

Each reports lost / unjustified duplicates / stuck (the checker of ``harness``), all 0.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from taskit import (
    App,
    BrokerConnectionError,
    BrokerOutcomeUnknownError,
    Job,
    Settings,
)
from tests._proxy import lossy_proxy
from tests.chaos.harness import Cluster, Report, cluster, consistency_problems, wait_until
from tests.chaos.producing import work_jobs

#: The bound on a broker call in these scenarios (TASKIT_BROKER_TIMEOUT), seconds.
BOUND = 1.0
REJECTED = "rejected, the lease had passed to another worker"
_REJECTED_JOB = re.compile(r"job (\S+): \S+ " + REJECTED)


@dataclass
class FaultFigures:
    scenario: str
    report: Report
    stuck: int  # jobs still queued, scheduled or running after the drain
    half_moved: list[str]
    worker_exits: int
    notes: dict[str, object] = field(default_factory=dict)

    def clean(self) -> bool:
        return (
            not self.report.lost
            and not self.report.unjustified
            and self.stuck == 0
            and not self.half_moved
            and self.worker_exits == 0
        )

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"{self.scenario}: {self.report.line()} stuck={self.stuck} "
            f"half_moved={len(self.half_moved)} worker_exits={self.worker_exits} {extra}"
        )


class Producer:
    """Enqueues ``chaos.work`` jobs and retries as the guide says; an id is acknowledged when
    an enqueue returned it, or a look-up after an unknown outcome found it stored."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.acked: list[str] = []
        self.longest = 0.0  # the longest single broker call, seconds
        self.errors: Counter[str] = Counter()

    async def _call(self, job: Job | None, batch: Sequence[Job]) -> bool | list[Job] | None:
        """One broker call, timed: a look-up of ``job`` (True if stored) or an enqueue."""
        began = time.monotonic()
        try:
            if job is not None:
                return await self.app.get_job(job.id) is not None
            return await self.app.enqueue_many(batch)
        finally:
            self.longest = max(self.longest, time.monotonic() - began)

    async def enqueue(self, batch: Sequence[Job], give_up: float = 120.0) -> None:
        """Store ``batch`` (one script call: all or none) whatever the connection does."""
        unknown = False
        with anyio.fail_after(give_up):
            while True:
                try:
                    if unknown and await self._call(batch[0], batch):
                        break  # the lost try had stored it: enqueueing again could rerun it
                    unknown = False
                    await self._call(None, batch)
                    break
                except BrokerOutcomeUnknownError:
                    self.errors["unknown"] += 1
                    unknown = True
                except BrokerConnectionError:
                    self.errors["unreachable"] += 1  # never sent: nothing stored
                await anyio.sleep(0.1)
        self.acked += [job.id for job in batch]


async def drain(app: App, seconds: float) -> int:
    """Wait until nothing is queued, scheduled or running; what is left after ``seconds``."""
    left = -1
    with anyio.move_on_after(seconds):
        while left != 0:
            stats = (await app.stats(["default"]))["default"]
            left = stats.queued + stats.scheduled + stats.running
            await anyio.sleep(0.1)
    return left


def finish(chaos: Cluster, scenario: str, acked: list[str], stuck: int) -> FaultFigures:
    client = chaos.client()
    try:
        half = consistency_problems(client, ["default"])
    finally:
        client.close()
    exits = sum(1 for w in chaos.workers if w.proc.poll() is not None and w.pid not in chaos.deaths)
    return FaultFigures(scenario, chaos.report(acked), stuck, half, exits)


def producer_app(url: str) -> App:
    return App(url, settings=Settings(broker_timeout=BOUND))


# -- row 23 ------------------------------------------------------------------------------------
async def run_frozen(
    directory: Path, *, freeze: float = 3.0, load: float = 1.5, seed: int = 23
) -> FaultFigures:
    """SIGSTOP redis-server for ``freeze`` seconds (lease: 2 s) with ``load`` seconds of
    enqueues before and after."""
    rng = random.Random(seed)
    with cluster(directory, broker_timeout=BOUND) as chaos:
        app = producer_app(chaos.url)
        producer = Producer(app)
        try:
            for _ in range(2):
                chaos.spawn("-c", "8")
            stop = anyio.Event()

            async def produce() -> None:
                for n in range(1_000_000):
                    if stop.is_set():
                        return
                    keys = [f"f{n}-{i}" for i in range(5)]
                    seconds = [rng.uniform(0.01, 0.2) for _ in keys]
                    await producer.enqueue(work_jobs(app, keys, seconds))
                    await anyio.sleep(0.02)

            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                await anyio.sleep(load)
                assert chaos.server.proc is not None
                os.kill(chaos.server.proc.pid, signal.SIGSTOP)
                await anyio.sleep(freeze)
                os.kill(chaos.server.proc.pid, signal.SIGCONT)
                await anyio.sleep(load)
                stop.set()
            stuck = await drain(app, 60)
        finally:
            await app.close()
        figures = finish(chaos, "frozen", producer.acked, stuck)
    figures.notes.update(
        freeze=f"{freeze:g}s",
        longest_call=f"{producer.longest:.2f}s",
        unknown=producer.errors["unknown"],
        unreachable=producer.errors["unreachable"],
    )
    return figures


# -- row 24 ------------------------------------------------------------------------------------
async def run_lost_replies(
    directory: Path, *, jobs: int = 300, chance: float = 0.05, seed: int = 24
) -> FaultFigures:
    """``jobs`` jobs through two lossy proxies cutting script calls after they ran: ``chance``
    of the workers' calls, four times that of the producer's (it makes far fewer)."""
    rng = random.Random(seed)
    with cluster(directory, broker_timeout=BOUND) as chaos:
        port = chaos.server.port
        with lossy_proxy(port, seed=seed) as workers_side, lossy_proxy(port, seed=seed + 1) as ours:
            workers_side.cut_randomly(b"EVALSHA", chance)
            ours.cut_randomly(b"EVALSHA", min(4 * chance, 1.0))
            env = {**chaos.env(), "TASKIT_BROKER_URL": workers_side.url}
            for _ in range(2):
                chaos.spawn("-c", "8", env=env)
            app = producer_app(ours.url)
            producer = Producer(app)
            try:
                for start in range(0, jobs, 10):
                    keys = [f"l{i}" for i in range(start, min(start + 10, jobs))]
                    seconds = [rng.uniform(0.01, 0.1) for _ in keys]
                    await producer.enqueue(work_jobs(app, keys, seconds))
                ours.cut_randomly(b"EVALSHA", 0.0)  # the drain's look-ups need answers
                stuck = await drain(app, 90)
            finally:
                await app.close()
            cuts = (workers_side.cuts, ours.cuts)
        figures = finish(chaos, "lost-replies", producer.acked, stuck)
        logs = "".join(w.log for w in chaos.workers)
        entries = chaos.entries()
        reclaimed = {e.job_id for e in entries if e.kind == "C"}
        # Settles whose reply was lost ("error" in the ledger) and whose retry was answered
        # applied: the first try had applied.
        failed = {e.token for e in entries if e.kind == "X" and e.applied == "error"}
        retried = {e.token for e in entries if e.kind == "X" and e.applied == "1"} & failed
    # A "rejected" line is the truth only for a job another worker took over.
    lying = [m[1] for m in _REJECTED_JOB.finditer(logs) if m[1] not in reclaimed]
    figures.notes.update(
        cuts_worker_side=cuts[0],
        cuts_producer_side=cuts[1],
        unknown=producer.errors["unknown"],
        settles_retried_applied=len(retried),
        settles_unknown=logs.count("outcome unknown"),
        rejected=logs.count(REJECTED),
        untrue_rejections=len(lying),
    )
    return figures


# -- row 30 ------------------------------------------------------------------------------------
async def run_reclaim_race(
    directory: Path, *, jobs: int = 40, reclaimers: int = 10
) -> FaultFigures:
    """A worker holding ``jobs`` leases is SIGKILLed while ``reclaimers`` idle workers sweep for
    expired leases every 50 ms."""
    with cluster(directory) as chaos:
        app = producer_app(chaos.url)
        try:
            victim = chaos.spawn("-c", str(jobs))
            task = app.remote("chaos.first_long")
            batch = [task.options(job_id=f"r{i}").prepare(f"r{i}", 60.0, 0.05) for i in range(jobs)]
            acked = [job.id for job in await app.enqueue_many(batch)]
            wait_until(
                lambda: sum(1 for e in chaos.entries() if e.kind == "S") >= jobs, 30, what="starts"
            )
            env = {**chaos.env(), "TASKIT_REAPER_INTERVAL": "0.05"}
            for _ in range(reclaimers):
                chaos.spawn("-c", "4", env=env, wait=False)
            for worker in chaos.workers[1:]:
                worker.wait_for_line("starting: queues=", timeout=60)
            chaos.kill(victim)
            stuck = await drain(app, 60)
        finally:
            await app.close()
        figures = finish(chaos, "reclaim-race", acked, stuck)
        taken = Counter(e.job_id for e in chaos.entries() if e.kind == "C")
        by = {e.pid for e in chaos.entries() if e.kind == "C"}
    figures.notes.update(
        reclaimers=reclaimers,
        reclaims=sum(taken.values()),
        taken_twice=sum(1 for n in taken.values() if n > 1),
        reclaiming_workers=len(by),
    )
    return figures


# -- long mode ---------------------------------------------------------------------------------
BEGIN, END = "<!-- connection-figures:begin -->", "<!-- connection-figures:end -->"


async def main(args: argparse.Namespace) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="taskit-chaos-connection-"))
    rows = []
    runs = [
        ("23", "Redis frozen (SIGSTOP) under load", run_frozen(tmp / "frozen", freeze=args.freeze,
                                                              load=args.load)),
        ("24", "lost replies, producer and worker side",
         run_lost_replies(tmp / "lost", jobs=args.jobs, chance=args.chance)),
        ("30", f"{args.reclaimers} workers reclaiming the same expired leases",
         run_reclaim_race(tmp / "race", jobs=args.race_jobs, reclaimers=args.reclaimers)),
    ]  # fmt: skip
    for number, name, run in runs:
        f = await run
        r = f.report
        notes = ", ".join(f"{k} {v}" for k, v in f.notes.items())
        rows.append(
            f"| {number} | {name} | {r.acked} | {len(r.lost)} | {len(r.dup)} | "
            f"{len(r.unjustified)} | {f.stuck} | {notes}; half-moved {len(f.half_moved)}, "
            f"worker exits {f.worker_exits} |"
        )
        print(rows[-1], flush=True)
    return "\n".join(rows)


def render(table: str) -> str:
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python -m tests.chaos.connection", *sys.argv[1:]])
    return (
        f"Measured {now} with `{command}` on {os.cpu_count()} shared cores; lease 2 s, reaper "
        f"0.5 s, broker_timeout {BOUND:g} s, each scenario on a redis-server of its own.\n\n"
        "| # | scenario | jobs | lost | dup | unjustified dup | stuck | notes |\n"
        "|---|---|---|---|---|---|---|---|\n" + table + "\n"
    )


def write(text: str) -> None:
    """Into ``benchmarks/results/`` and between the markers of ``docs/reliability.md``."""
    from datetime import UTC, datetime

    from tests.e2e.helpers import ROOT

    day = datetime.now(UTC).strftime("%Y-%m-%d")
    result = ROOT / "benchmarks" / "results" / f"reliability-connection-{day}.md"
    result.write_text(f"# Connection-fault figures, {day}\n\n{text}")
    doc = ROOT / "docs" / "reliability.md"
    page = doc.read_text()
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freeze", type=float, default=10.0, help="seconds Redis is stopped")
    parser.add_argument("--load", type=float, default=5.0, help="seconds of load around it")
    parser.add_argument("--jobs", type=int, default=2000, help="lost-reply jobs")
    parser.add_argument("--chance", type=float, default=0.05, help="share of calls cut")
    parser.add_argument("--race-jobs", type=int, default=100)
    parser.add_argument("--reclaimers", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print only")
    arguments = parser.parse_args()
    body = render(anyio.run(main, arguments))
    print(body)
    if not arguments.no_write:
        write(body)
        print("wrote docs/reliability.md")
