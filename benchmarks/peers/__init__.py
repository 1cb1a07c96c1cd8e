"""One adapter per system (taskit and its peers), all behind ``base.System``."""

from __future__ import annotations

import importlib

from benchmarks.peers.base import System

__all__ = ["SYSTEMS", "System", "load"]

#: name -> module holding the adapter class ``Bench``; taskit first (ratios are taskit/peer).
SYSTEMS: dict[str, str] = {
    "taskit": "benchmarks.peers.taskit_bench",
    "arq": "benchmarks.peers.arq_bench",
    "saq": "benchmarks.peers.saq_bench",
    "taskiq": "benchmarks.peers.taskiq_bench",
}


def load(name: str) -> type[System] | str:
    """The adapter class for ``name``, or why it cannot run here (its package is missing)."""
    try:
        module = importlib.import_module(SYSTEMS[name])
    except ImportError as exc:
        return f"not installed ({exc.name}): pip install -e '.[redis,bench]'"
    cls: type[System] = module.Bench
    return cls
