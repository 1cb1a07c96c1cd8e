"""Redis killed under load and restarted on the same directory (catalogue rows 8-10), shared by
the short tests and the long-mode runner.

A producer enqueues a job every ``interval`` seconds (an id counts as acknowledged only when its
enqueue returned); two workers run them; redis-server is SIGKILLed mid-stream and restarted on the
same port and data directory; the producer goes on (its failed enqueues are not acknowledged);
then everything drains. The figures say what was lost, and how many of the lost were acknowledged
within the persistence window before the kill.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from taskit import App, BrokerConnectionError
from tests.chaos.harness import Cluster, Report, cluster, consistency_problems
from tests.chaos.producing import work_jobs

PERSISTENCE = {
    "always": ("--appendonly", "yes", "--appendfsync", "always"),
    "everysec": ("--appendonly", "yes", "--appendfsync", "everysec"),
    "rdb": ("--save", "1 1"),
    "none": (),
}


@dataclass
class RestartFigures:
    persistence: str
    report: Report
    acked_before_kill: int
    lost_in_window: int  # lost ids acknowledged within `window` seconds before the kill
    window: float
    recovery: float  # kill -> first job completed after Redis was back
    stuck_running: int  # jobs RUNNING one lease after the drain
    half_moved: list[str]
    detected: bool  # a worker logged the empty restart
    worker_exits: int

    def line(self) -> str:
        return (
            f"{self.persistence}: {self.report.line()} acked_before_kill={self.acked_before_kill}"
            f" lost_in_{self.window:.0f}s_window={self.lost_in_window}"
            f" recovery={self.recovery:.2f}s"
            f" stuck={self.stuck_running} detected_empty={self.detected}"
        )


async def _produce(app: App, keys: list[str], acked: dict[str, float], stop: anyio.Event,
                   interval: float) -> None:  # fmt: skip
    for key in keys:
        if stop.is_set():
            return
        [job] = work_jobs(app, [key], 0.05)
        try:
            await app.enqueue_many([job])
            acked[key] = time.time()
        except BrokerConnectionError:
            pass  # not acknowledged: it may or may not exist
        await anyio.sleep(interval)


async def run_restart(
    directory: Path,
    persistence: str,
    *,
    before: float = 2.0,
    after: float = 2.0,
    interval: float = 0.01,
    window: float = 2.0,
) -> RestartFigures:
    with cluster(directory, *PERSISTENCE[persistence], visibility_timeout=2.0) as chaos:
        app = App(chaos.url)
        try:
            return await _run(chaos, app, persistence, before, after, interval, window)
        finally:
            await app.close()


async def _run(chaos: Cluster, app: App, persistence: str, before: float, after: float,
               interval: float, window: float) -> RestartFigures:  # fmt: skip
    workers = [chaos.spawn("-c", "4"), chaos.spawn("-c", "4")]
    acked: dict[str, float] = {}
    stop = anyio.Event()
    keys = [f"r{i}" for i in range(100_000)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(_produce, app, keys, acked, stop, interval)
        await anyio.sleep(before)
        killed_at = time.time()
        chaos.server.kill()
        await anyio.sleep(0.5)
        chaos.server.start()
        restarted_at = time.time()
        await anyio.sleep(after)
        stop.set()
    client = chaos.client()
    try:
        with anyio.fail_after(60):
            while True:
                stats = (await app.stats(["default"]))["default"]
                if stats.queued + stats.scheduled + stats.running == 0:
                    break
                await anyio.sleep(0.1)
        await anyio.sleep(chaos.lease + chaos.reaper)
        stuck = (await app.stats(["default"]))["default"].running
        half_moved = consistency_problems(client, ["default"])
    finally:
        client.close()
    # "always" keeps every acknowledged write: a rerun there would be a real fencing failure.
    report = chaos.report(list(acked), [] if persistence == "always" else [killed_at])
    ends = sorted(e.at for e in chaos.entries() if e.kind == "X" and e.applied == "1"
                  and e.outcome == "complete" and e.at > restarted_at)  # fmt: skip
    lost_window = [i for i in report.lost if acked[i] >= killed_at - window]
    detected = any("lost its data" in w.log for w in workers)
    return RestartFigures(
        persistence=persistence,
        report=report,
        acked_before_kill=sum(1 for t in acked.values() if t < killed_at),
        lost_in_window=len(lost_window),
        window=window,
        recovery=(ends[0] - killed_at) if ends else float("inf"),
        stuck_running=stuck,
        half_moved=half_moved,
        detected=detected,
        worker_exits=sum(1 for w in workers if w.proc.poll() is not None),
    )
