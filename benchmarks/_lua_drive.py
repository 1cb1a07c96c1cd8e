"""The client side of ``benchmarks.lua_instructions``: drives one taskit tree's scripts.

Run as ``python benchmarks/_lua_drive.py URL PID JOBS`` with the tree to measure first on
``PYTHONPATH`` (this file imports nothing else from the benchmarks, so an older tree works).
It warms every script up (loaded, first call made), then runs each phase of ``PHASES`` and
after each one has callgrind dump the counts of ``redis-server`` PID (``callgrind_control``,
zeroed before the phase), so that dump N holds phase N alone, but for the trickle's reserves:
one dump each. Prints the ``taskit`` it used, then how many jobs trickled (those dumps).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import taskit
from taskit import App
from taskit.job import JobResult, Lease, Outcome, OutcomeKind

TRICKLE_PHASE = "reserve, 1 a call (trickle)"
#: The phases in order, with what a "call" is in each: jobs per script call.
PHASES = (
    ("enqueue, single", 1),
    ("reserve, 10 a call", 10),
    ("settle, 10 a call", 10),
    (TRICKLE_PHASE, 1),
    ("settle, 1 a call", 1),
    ("enqueue, batch of 1,000", 1000),
)
QUEUE = "default"
COMPLETE = OutcomeKind.COMPLETE
LEASE = 60.0
#: At most this many jobs trickle (each reserve is dumped alone: about 0.4 s each).
TRICKLE = 100


def control(pid: str, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, pid], check=True, capture_output=True)


def completed(leases: list[Lease]) -> list[Outcome]:
    """A COMPLETE outcome (result None) for each lease, as a worker settles a no-op job."""
    done = JobResult(success=True, value=None)
    return [Outcome(job_id=x.job.id, token=x.token, kind=COMPLETE, result=done) for x in leases]


async def drain(app: App, count: int) -> int:
    """Reserve and settle ``count`` jobs at a time until none are left; how many settled."""
    done = 0
    while leases := await app.broker.reserve([QUEUE], count=count, lease=LEASE, timeout=0):
        done += len(leases)
        await app.broker.settle(completed(leases))
    return done


async def main(url: str, pid: str, jobs: int) -> None:
    app = App(broker=url)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    await noop.enqueue()  # warm-up: every script of the lifecycle loaded and called once
    await drain(app, 10)
    control(pid, "-z")
    for _ in range(jobs):
        await noop.enqueue()
    control(pid, "-d")
    batches = []
    while leases := await app.broker.reserve([QUEUE], count=10, lease=LEASE, timeout=0):
        batches.append(leases)
    control(pid, "-d")
    for leases in batches:
        await app.broker.settle(completed(leases))
    control(pid, "-d")
    # The trickle: each reserve (of up to 10, as a worker at concurrency 10 asks) finds the one
    # job just queued (unmeasured: zeroed after it), one dump each; each settle carries one.
    single: list[Lease] = []
    trickle = min(jobs, TRICKLE)
    for _ in range(trickle):
        await noop.enqueue()
        control(pid, "-z")
        single += await app.broker.reserve([QUEUE], count=10, lease=LEASE, timeout=0)
        control(pid, "-d")
    for lease in single:
        await app.broker.settle(completed([lease]))
    control(pid, "-d")
    await app.enqueue_many([noop.prepare() for _ in range(1000)])
    control(pid, "-d")
    if await drain(app, 100) != 1000 or sum(map(len, batches)) != jobs or len(single) != trickle:
        raise SystemExit("a job went missing")
    await app.close()
    print(taskit.__file__)
    print(trickle)  # the trickle reserve's dumps, one a call


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
