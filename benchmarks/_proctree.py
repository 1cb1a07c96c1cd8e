"""CPU seconds of a whole process tree: a worker and every process it forks.

Celery's prefork children and RQ's work horses run jobs outside the process the runner started,
so ``benchmarks.probe``'s ``/proc/self/stat`` does not see their CPU. Every worker the runners
start leads its own session (``start_new_session``), so its tree is the processes of that
session: their user and system time, plus what their children that already exited used
(``cutime``/``cstime``, counted once, in the parent that reaped them).
"""

from __future__ import annotations

import os

__all__ = ["session_cpu"]

_TICK = os.sysconf("SC_CLK_TCK")


def session_cpu(sid: int) -> float:
    """utime + stime + cutime + cstime, in seconds, over the live processes of session ``sid``."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[3]) == sid:  # field 6 of stat(5): the session id
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / _TICK
