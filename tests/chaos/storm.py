"""The kill storm (catalogue row 2), shared by the short test and the long-mode runner.

Several `taskit worker` processes drain jobs of 10-500 ms while a random one is SIGKILLed every
``kill_every`` seconds and a new one spawned in its place. Returns the checker's report and the
throughput.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from taskit import App
from tests.chaos.harness import Report, cluster
from tests.chaos.producing import enqueue_work


@dataclass
class StormFigures:
    jobs: int
    workers: int
    kills: int
    seconds: float
    report: Report
    lease: float
    reaper: float

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.report.line()} kills={self.kills} seconds={self.seconds:.1f} "
            f"jobs/s={self.jobs_per_second:.1f}"
        )


async def run_storm(
    directory: Path,
    *,
    jobs: int,
    workers: int,
    kill_every: float,
    seed: int,
    max_seconds: float = 600.0,
    durations: tuple[float, float] = (0.01, 0.3),
    lease: float = 2.0,
    reaper: float = 0.5,
) -> StormFigures:
    rng = random.Random(seed)
    settings = {"visibility_timeout": lease, "reaper_interval": reaper, "max_retries": 50}
    with cluster(directory, **settings) as chaos:  # type: ignore[arg-type]
        app = App(chaos.url)
        try:
            live = [chaos.spawn("-c", "8") for _ in range(workers)]
            keys = [f"s{i}" for i in range(jobs)]
            began = time.monotonic()
            acked = await enqueue_work(app, keys, [rng.uniform(*durations) for _ in keys])
            kills = 0
            next_kill = time.monotonic() + kill_every
            with anyio.fail_after(max_seconds):
                while True:
                    stats = (await app.stats(["default"]))["default"]
                    if stats.queued + stats.scheduled + stats.running == 0:
                        break
                    if time.monotonic() >= next_kill:
                        victim = live.pop(rng.randrange(len(live)))
                        chaos.kill(victim)
                        kills += 1
                        live.append(chaos.spawn("-c", "8", wait=False))
                        next_kill = time.monotonic() + kill_every
                    await anyio.sleep(0.05)
            seconds = time.monotonic() - began
        finally:
            await app.close()
        report = chaos.report(acked)
        return StormFigures(jobs, workers, kills, seconds, report, lease, reaper)
