"""Lease upkeep, two loops of every worker:

* ``keep_leases`` extends the leases of the jobs a worker runs or holds waiting (its prefetch),
  each third of the lease, and stops jobs whose lease was lost or whose cancel was requested;
* the ``Reaper`` takes over jobs whose lease expired on a worker that died or stalled, and retries
  or dead-letters each as its task's policy says (only a worker knows the backoff, so the broker
  hands them back under a fresh lease, see ``Broker.reclaim``). Any number of reapers may sweep
  the same queues at once: ``reclaim`` is atomic, so each expired lease is taken over once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from taskit._outage import Outage
from taskit.backoff import BackoffPolicy
from taskit.errors import TaskitError
from taskit.execution import RunningJob, StopReason, retry_or_dead
from taskit.job import LeaseState

if TYPE_CHECKING:
    from taskit.broker.base import Broker
    from taskit.events import WorkerEvents
    from taskit.task import Task

__all__ = ["Reaper", "keep_leases"]

log = logging.getLogger("taskit.worker")  # operators filter the worker's lines by this name


async def keep_leases(
    broker: Broker,
    running: Callable[[], list[RunningJob]],
    lease: float,
    stopped: Callable[[], None] | None = None,
) -> None:
    """Until cancelled, every ``lease / 3`` seconds extend the leases of ``running()`` (the jobs
    a worker runs and those it holds waiting to start) by ``lease`` seconds; a job whose lease
    was lost, or whose cancel was requested, is stopped, and then ``stopped()`` (if given) is
    called once, for the worker to settle the stopped jobs that were not started; one still
    held has its ``held_until`` moved on. A broker failure is tried again sooner (a capped
    backoff), as the leases run out meanwhile."""
    outage = Outage("extending leases", log)
    pause = lease / 3
    while True:
        await anyio.sleep(pause)
        pause = lease / 3
        jobs = running()
        if not jobs:
            continue
        asked = time.monotonic()  # each lease held now runs at least a lease from here
        try:
            states = await broker.extend([r.lease for r in jobs], lease=lease)
            outage.recovered()
        except (TaskitError, OSError) as exc:
            pause = min(pause, outage.failed(exc, f"extending {len(jobs)} leases failed"))
            continue
        hit = False
        for job, state in zip(jobs, states, strict=True):
            if state is LeaseState.HELD:
                job.held_until = asked + lease
            elif state is LeaseState.LOST:
                job.stop(StopReason.LEASE_LOST)
                hit = True
            elif state is LeaseState.CANCELLED:
                job.stop(StopReason.CANCEL)
                hit = True
        if hit and stopped is not None:
            stopped()


class Reaper:
    """Reclaims ``queues``' expired leases in ``broker`` every ``interval`` seconds, taking each
    over for ``lease`` seconds, and settles it RETRY or DEAD_LETTER by its task's backoff (found
    in ``tasks`` by name; ``backoff`` for a task not there); ``events`` (if any) hears of each."""

    def __init__(
        self,
        broker: Broker,
        tasks: Mapping[str, Task[Any, Any]],
        queues: Sequence[str],
        *,
        lease: float,
        interval: float,
        backoff: BackoffPolicy,
        events: WorkerEvents | None = None,
    ) -> None:
        self.broker = broker
        self.tasks = tasks
        self.backoff = backoff
        self.queues = list(queues)
        self.lease = lease
        self.interval = interval
        self.events = events

    async def run(self) -> None:
        """Sweep until cancelled; a broker failure waits a capped backoff, logged once per
        outage."""
        outage = Outage("reclaiming expired leases", log)
        while True:
            pause = self.interval
            try:
                await self.sweep()
                outage.recovered()
            except (TaskitError, OSError) as exc:
                pause = max(pause, outage.failed(exc))
            await anyio.sleep(pause)

    async def sweep(self) -> None:
        """One pass: reclaim what expired, settle each, log what happened."""
        leases = await self.broker.reclaim(self.queues, lease=self.lease)
        outcomes = []
        for lease in leases:
            job = lease.job
            task = self.tasks.get(job.task)
            policy = task.opts.backoff if task else self.backoff
            error = TimeoutError(
                f"lease expired: the worker running attempt {job.attempts} stopped responding"
            )
            outcomes.append(retry_or_dead(job, lease.token, error, policy))
        if not outcomes:
            return
        # Logged once settled, as it happened: a settle that fails leaves the jobs under this
        # pass's lease, and a later pass reclaims (and reports) them.
        applied = await self.broker.settle(outcomes)
        for lease, outcome, ok in zip(leases, outcomes, applied, strict=True):
            job = lease.job
            log.warning(
                "job %s (%s): lease expired on attempt %d; %s%s",
                job.id, job.task, job.attempts, outcome.kind.value,
                "" if ok else " refused, the job changed meanwhile",
                extra={"job_id": job.id, "task": job.task, "attempt": job.attempts},
            )  # fmt: skip
        if self.events:
            self.events.reclaimed(leases, outcomes, applied)
