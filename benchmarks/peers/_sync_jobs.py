"""The jobs of the systems that run plain functions only (Celery, RQ, Dramatiq, Huey), as plain
functions each app module wraps in its own decorator: ``noop_sync`` and ``stamp`` for
``benchmarks.run``, and the bodies of ``benchmarks.peers.bodies``."""

from __future__ import annotations

from benchmarks import probe
from benchmarks.peers import bodies

__all__ = ["JOBS"]


def noop_sync() -> None:
    probe.tally()


def stamp(sent: float) -> None:
    probe.stamp(sent)


def ran_sync() -> None:
    bodies.ran()


def io_sync() -> None:
    bodies.io_sync()


#: task name -> function (each defined here: some systems' decorators rename the function they
#: wrap in its module, so the bodies' own functions are never handed to them)
JOBS = {
    "noop_sync": noop_sync,
    "stamp": stamp,
    "ran_sync": ran_sync,
    "io_sync": io_sync,
}
