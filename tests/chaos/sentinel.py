"""A Sentinel failover under load with the documented settings (catalogue row 25).

A Sentinel set of its own (tests/topology: 3 sentinels, a master and ``replicas`` replicas,
``min-replicas-to-write`` on every data node), a `taskit worker` subprocess running
``stop.sleep(0)`` jobs, and producers in the test process enqueueing as fast as they can,
producers and worker with ``?replicas=<replicas>`` in their URL (``wait_for_replicas``: each
acknowledged write waits until every replica has it). Once ``before`` jobs are acknowledged,
``SENTINEL FAILOVER``; the producers go on until ``after`` more are acknowledged, then every
acknowledged job is awaited.

Figures: **acked** (an ``enqueue`` that returned), **completed** (its result read), **lost**
(acknowledged, and no record of it left: ``JobNotFoundError``), **stuck** (acknowledged, still
unfinished at the deadline), and **lost outside the window**: lost jobs that were not
acknowledged by the old master in its last ``WINDOW`` seconds (what asynchronous replication
and Sentinel's failover, which does not wait for the replica, may drop without
``?replicas=``; with it, nothing may go).
Refused enqueues (``NOREPLICAS`` while the new master has no
replica yet, ``BrokerError``) and those whose outcome is unknown (the connection broke after
sending, or fewer replicas than asked acknowledged it) are not acknowledged: counted, offered
again under a new id as a real producer would.
``python -m tests.chaos.sentinel --after N`` runs a longer one (``--no-wait``: without
``?replicas=``, to see the window it closes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from taskit import App
from taskit.errors import (
    BrokerError,
    BrokerOutcomeUnknownError,
    JobNotFoundError,
    ResultTimeoutError,
)
from tests.e2e.helpers import worker_process
from tests.topology import SentinelSet

__all__ = ["FailoverFigures", "run_sentinel_failover"]

#: Concurrent producers in the test process.
PRODUCERS = 4
#: Seconds before the old master's last acknowledgement within which an acknowledged write may
#: not have reached the replica Sentinel promotes (replication is asynchronous, and Sentinel
#: does not wait for the replica to catch up).
WINDOW = 0.1
#: Seconds the whole run may take, and the wait for the last results within it.
LIMIT = 120.0


@dataclass
class FailoverFigures:
    acked: list[str] = field(default_factory=list)
    #: When each job was acknowledged, and by which server (``host:port``, as the broker's
    #: locator named it then).
    acked_on: dict[str, tuple[float, str]] = field(default_factory=dict)
    old_master: str = ""
    completed: int = 0
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    refused: int = 0
    unknown: int = 0
    acked_at_switch: int = 0
    switch_seconds: float = 0.0  # SENTINEL FAILOVER until every sentinel named the new master
    worker_exited: bool = False
    other_errors: list[str] = field(default_factory=list)

    def outside_window(self, window: float = WINDOW) -> list[str]:
        """Lost jobs not acknowledged by the old master in its last ``window`` seconds of
        acknowledgements (the writes a promoted replica may not have received yet)."""
        old = [at for at, where in self.acked_on.values() if where == self.old_master]
        last = max(old, default=0.0)
        return [
            job_id
            for job_id in self.lost
            if self.acked_on[job_id][1] != self.old_master
            or self.acked_on[job_id][0] < last - window
        ]

    def line(self) -> str:
        return (
            f"acked={len(self.acked)} completed={self.completed} lost={len(self.lost)} "
            f"lost_outside_window={len(self.outside_window())} "
            f"stuck={len(self.stuck)} refused={self.refused} unknown={self.unknown} "
            f"acked_at_switch={self.acked_at_switch} switch={self.switch_seconds:.1f}s "
            f"worker_exited={self.worker_exited} other_errors={len(self.other_errors)}"
        )


async def run_sentinel_failover(
    directory: Path,
    *,
    before: int = 100,
    after: int = 200,
    replicas: int = 2,
    min_replicas_to_write: int = 2,
    wait_for_replicas: bool = True,
) -> FailoverFigures:
    """One failover under load (module docstring)."""
    figures = FailoverFigures()
    with SentinelSet(
        directory, replicas=replicas, min_replicas_to_write=min_replicas_to_write
    ) as sentinels:
        url = sentinels.url(prefix=f"taskit-c25-{uuid.uuid4().hex[:8]}")
        if wait_for_replicas:
            url += f"&replicas={replicas}"
        app = App(url)
        try:
            with worker_process("tests.apps.stop_app:app", {"TASKIT_BROKER_URL": url}) as worker:
                with anyio.fail_after(LIMIT):
                    await _load(app, sentinels, figures, before, after)
                await _collect(app, figures)
                figures.worker_exited = worker.proc.poll() is not None
        finally:
            await app.close()
    return figures


async def _load(
    app: App, sentinels: SentinelSet, figures: FailoverFigures, before: int, after: int
) -> None:
    reached = {before: anyio.Event()}  # set once that many jobs are acknowledged

    async def produce() -> None:
        sleep = app.remote("stop.sleep")
        while True:
            try:
                job = await sleep.enqueue(0.0)
            except BrokerOutcomeUnknownError:
                figures.unknown += 1
            except BrokerError as exc:
                figures.refused += 1
                if "NOREPLICAS" not in str(exc) and "READONLY" not in str(exc):
                    figures.other_errors.append(str(exc))
                await anyio.sleep(0.05)
            else:
                figures.acked.append(job.id)
                figures.acked_on[job.id] = (time.monotonic(), _serving(app))
                for count, event in reached.items():
                    if len(figures.acked) >= count:
                        event.set()

    async with anyio.create_task_group() as group:
        for _ in range(PRODUCERS):
            group.start_soon(produce)
        await reached[before].wait()  # jobs flow: switch now, under load
        began = time.monotonic()
        figures.acked_at_switch = len(figures.acked)
        figures.old_master = (await anyio.to_thread.run_sync(sentinels.master)).address
        await anyio.to_thread.run_sync(sentinels.failover)
        figures.switch_seconds = time.monotonic() - began
        done = len(figures.acked) + after
        reached[done] = anyio.Event()
        await reached[done].wait()
        group.cancel_scope.cancel()


async def _collect(app: App, figures: FailoverFigures) -> None:
    """Await every acknowledged job: completed, lost (no record) or stuck (unfinished)."""
    deadline = time.monotonic() + LIMIT / 2
    for job_id in figures.acked:
        try:
            await app.result(job_id, timeout=max(0.1, deadline - time.monotonic()))
        except JobNotFoundError:
            figures.lost.append(job_id)
        except ResultTimeoutError:
            figures.stuck.append(job_id)
        else:
            figures.completed += 1


def _serving(app: App) -> str:
    """The server the broker's locator names now (``host:port``)."""
    current = app.broker._conn._locator.current()  # type: ignore[attr-defined]
    return f"{current.host}:{current.port}" if current is not None else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=int, default=500)
    parser.add_argument("--after", type=int, default=3000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--min-replicas-to-write", type=int, default=2)
    parser.add_argument("--no-wait", action="store_true", help="without ?replicas=")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskit-c25-") as directory:
        figures = anyio.run(
            lambda: run_sentinel_failover(
                Path(directory), before=args.before, after=args.after,
                replicas=args.replicas, min_replicas_to_write=args.min_replicas_to_write,
                wait_for_replicas=not args.no_wait,
            )
        )  # fmt: skip
    print(f"row 25: {figures.line()}")


if __name__ == "__main__":
    main()
