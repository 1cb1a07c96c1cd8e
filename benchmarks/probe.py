"""What every benchmark job does, for every system: prove it ran, at almost no cost.

A job calls ``tally()`` (the no-op jobs) or ``stamp(sent)`` (the latency job). Counting is done
in the worker process (a lock and a clock read, well under a microsecond), not with a Redis call
per job, so a no-op job stays a no-op and the figures are the system's own cost. The count still
reaches Redis, which is how the runner knows every job ran:

* ``BENCH_PROBE=final``: the job that brings this process's count to ``BENCH_EXPECT`` writes the
  report (count, monotonic times of the first and that job, this process's CPU from
  ``/proc/self/stat`` and its ``VmHWM``) and pushes to the ``done`` list the runner waits on.
* ``BENCH_PROBE=periodic``: a thread writes the report every 20 ms while it changes (several
  worker processes: the runner sums their counts).
* ``stamp(sent)``: pushes ``start - sent`` (seconds, ``time.monotonic``, one clock for every
  process on the machine) to the latency list at once.

Reports live under ``bench:<BENCH_RUN>:...`` in the benchmark's own Redis (``BENCH_REDIS_URL``).
"""

from __future__ import annotations

import json
import os
import threading
import time

import redis

__all__ = ["done_key", "latency_key", "probe_key", "stamp", "tally"]

_TICK = os.sysconf("SC_CLK_TCK")
_URL = os.environ.get("BENCH_REDIS_URL", "")
_RUN = os.environ.get("BENCH_RUN", "0")
_MODE = os.environ.get("BENCH_PROBE", "none")
_EXPECT = int(os.environ.get("BENCH_EXPECT", "0"))
_PERIOD = 0.02


def probe_key(run: str, pid: int | str) -> str:
    return f"bench:{run}:probe:{pid}"


def done_key(run: str) -> str:
    return f"bench:{run}:done"


def latency_key(run: str) -> str:
    return f"bench:{run}:lat"


class _Probe:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.report: dict[str, float] = {}
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(_URL)
        return self._client

    def tally(self) -> None:
        now = time.monotonic()
        with self.lock:
            self.count += 1
            n = self.count
            self.last = now
            if n == 1:
                self.first = now
                self.report["cpu_first"] = _proc_cpu()
                self.report["process_time_first"] = time.process_time()
        if n == _EXPECT and _MODE == "final":
            self.report["cpu_last"] = _proc_cpu()
            self.report["process_time_last"] = time.process_time()
            self.report["hwm_kb"] = _hwm_kb()
            self.write()
            self.client.rpush(done_key(_RUN), os.getpid())

    def write(self) -> None:
        with self.lock:
            report = {**self.report, "count": self.count, "first": self.first, "last": self.last}
        self.client.set(probe_key(_RUN, os.getpid()), json.dumps(report))

    def flush_forever(self) -> None:
        written = -1
        while True:
            time.sleep(_PERIOD)
            if self.count != written:
                written = self.count
                self.write()


def _proc_cpu() -> float:
    """This process's utime + stime in seconds (all threads), from ``/proc/self/stat``."""
    with open("/proc/self/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # fields 14 and 15 of stat(5)


def _hwm_kb() -> float:
    """This process's peak resident set size (``VmHWM``) in kB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    return 0.0


_probe = _Probe()
if _MODE == "periodic" and _URL:
    threading.Thread(target=_probe.flush_forever, name="bench-probe", daemon=True).start()


def tally() -> None:
    """Count one finished no-op job in this process."""
    _probe.tally()


def stamp(sent: float) -> None:
    """Record how long after ``sent`` (``time.monotonic()`` in the producer) this job started."""
    started = time.monotonic()
    _probe.client.rpush(latency_key(_RUN), repr(started - sent))
