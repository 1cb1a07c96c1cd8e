"""Periodic jobs: an interval and a cron schedule, enqueued once per due time however many
schedulers run.

    python examples/periodic.py          # a scheduler and a worker in one process, for 1.2 s

In production, with the App on Redis (not the memory:// broker here, which one process owns),
run the schedules next to the workers (`taskit worker APP --scheduler`) or in their own process
(`taskit scheduler APP`); any number of them may run: each due run is claimed in the broker, and
only the winner enqueues it.
"""

from __future__ import annotations

import anyio

from taskit import App
from taskit.scheduler import Scheduler

app = App("memory://")
pings: list[str] = []


@app.periodic(every=0.25)  # due at each multiple of 0.25 s since the epoch
@app.task(name="health.ping")
async def ping() -> None:
    pings.append("pong")


@app.periodic(cron="0 3 * * *", tz="Europe/Paris", kwargs={"fmt": "pdf"})  # 03:00 Paris time
@app.task(name="reports.nightly")
def nightly_report(fmt: str) -> str:
    return f"nightly report as {fmt}"


async def main(seconds: float = 1.2) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(Scheduler(app).run)
        async with app.worker(concurrency=2):
            await anyio.sleep(seconds)
        tg.cancel_scope.cancel()
    print(f"schedules: {', '.join(sorted(app.schedules))}")
    print(f"pings: {len(pings)}")


if __name__ == "__main__":
    anyio.run(main)
