"""The memory broker's one seam for taskit's own tests: hooks to provoke what users cannot (a
stored job damaged in place, as a bad restore or another program leaves one in Redis). Not a
public API; users' tests want ``taskit.testing``."""

from __future__ import annotations

from typing import Any

from taskit.broker.memory.broker import MemoryBroker

__all__ = ["damage"]


def damage(broker: MemoryBroker, job_id: str, field: str, value: Any) -> None:
    """Set ``field`` of the stored job ``job_id`` to ``value`` in place, unchecked (a value of
    the wrong type makes the record unreadable, as a damaged Redis record is). ``KeyError`` if
    the broker holds no such job."""
    with broker._lock:
        setattr(broker._records[job_id].job, field, value)
