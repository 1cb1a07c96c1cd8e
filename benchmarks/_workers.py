"""Worker processes of any system, and waiting for the probe's word that their jobs ran."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from benchmarks.probe import done_key, latency_key, probe_key

__all__ = ["Drained", "WorkerGroup"]

ROOT = Path(__file__).resolve().parent.parent
#: How long a worker gets to stop on SIGTERM before it is killed.
STOP_GRACE = 15.0


@dataclass
class Drained:
    """What the probes reported for one drain: jobs counted, seconds from the first job's end
    to the last's, and (one process) worker CPU seconds over that span and peak RSS in kB."""

    jobs: int
    seconds: float
    cpu: float | None = None
    process_time: float | None = None
    hwm_kb: float | None = None
    waits: int = 0
    reports: list[dict[str, float]] = field(default_factory=list)


class WorkerGroup:
    """``count`` worker processes of one command, started with the probe configured by env."""

    def __init__(self, argv: Sequence[str], run: str, url: str, probe: str, expect: int = 0):
        self.argv = list(argv)
        self.run = run
        self.url = url
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "BENCH_REDIS_URL": url,
            "BENCH_RUN": run,
            "BENCH_PROBE": probe,
            "BENCH_EXPECT": str(expect),
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = Path(tempfile.mkstemp(prefix=f"bench-{run}-", suffix=".log")[1])

    def start(self, count: int = 1) -> None:
        with self.log.open("ab") as log:
            for _ in range(count):
                self.procs.append(
                    subprocess.Popen(
                        self.argv,
                        cwd=ROOT,
                        env=self.env,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                    )
                )

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.log.unlink(missing_ok=True)

    async def wait_done(self, client: Redis, timeout: float) -> Drained:
        """Wait for the one process in ``final`` mode to report its expected count."""
        waits = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            waits += 1
            popped = await client.blpop([done_key(self.run)], timeout=1)
            if popped is not None:
                raw = await client.get(probe_key(self.run, int(popped[1])))
                if raw is None:
                    raise RuntimeError("the probe signalled done without a report")
                report = json.loads(raw)
                return Drained(
                    jobs=int(report["count"]),
                    seconds=report["last"] - report["first"],
                    cpu=report["cpu_last"] - report["cpu_first"],
                    process_time=report["process_time_last"] - report["process_time_first"],
                    hwm_kb=report["hwm_kb"],
                    waits=waits,
                    reports=[report],
                )
            self.check_alive()
        raise TimeoutError(f"jobs not done after {timeout:.0f} s")

    async def wait_count(self, client: Redis, jobs: int, timeout: float) -> Drained:
        """Wait until the processes in ``periodic`` mode have together counted ``jobs``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pattern = probe_key(self.run, "*")
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            keys = [k async for k in client.scan_iter(match=pattern)]
            reports = [json.loads(v) for v in await client.mget(keys) if v] if keys else []
            counted = sum(int(r["count"]) for r in reports)
            if counted >= jobs:
                first = min(r["first"] for r in reports if r["count"])
                last = max(r["last"] for r in reports)
                return Drained(jobs=counted, seconds=last - first, reports=reports)
            self.check_alive()
        raise TimeoutError(f"jobs not done after {timeout:.0f} s")

    async def next_latency(self, client: Redis, timeout: float) -> float:
        """The next start delay a ``stamp`` job pushed, in seconds."""
        popped = await client.blpop([latency_key(self.run)], timeout=timeout)
        if popped is None:
            self.check_alive()
            raise TimeoutError(f"no stamped job started within {timeout:.0f} s")
        return float(popped[1])
