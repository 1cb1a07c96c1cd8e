"""One adapter per system (taskit and its peers), all behind ``base.System``."""

from __future__ import annotations

import importlib

from benchmarks.peers.base import System

__all__ = ["ASYNC_SYSTEMS", "SYNC_SYSTEMS", "SYSTEMS", "System", "load"]

#: name -> module holding the adapter class ``Bench``; taskit first (ratios are taskit/peer).
SYSTEMS: dict[str, str] = {
    "taskit": "benchmarks.peers.taskit_bench",
    "arq": "benchmarks.peers.arq_bench",
    "saq": "benchmarks.peers.saq_bench",
    "taskiq": "benchmarks.peers.taskiq_bench",
    "celery": "benchmarks.peers.celery_bench",
    "rq": "benchmarks.peers.rq_bench",
    "dramatiq": "benchmarks.peers.dramatiq_bench",
    "huey": "benchmarks.peers.huey_bench",
}
#: The systems with async jobs (FastAPI's side of ``benchmarks/web.py``) and with plain ones
#: (Flask's); taskit is in both.
ASYNC_SYSTEMS = ("taskit", "arq", "saq", "taskiq")
SYNC_SYSTEMS = ("taskit", "celery", "rq", "dramatiq", "huey")


def load(name: str) -> type[System] | str:
    """The adapter class for ``name``, or why it cannot run here (its package is missing)."""
    try:
        module = importlib.import_module(SYSTEMS[name])
    except ImportError as exc:
        return f"not installed ({exc.name}): bash benchmarks/peers_venv.sh"
    cls: type[System] = module.Bench
    return cls
