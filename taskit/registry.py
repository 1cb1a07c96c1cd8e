"""The old name of ``taskit.presence`` (live workers), kept so ``taskit.registry.live_workers``
and the other names users import from here keep working. New code imports ``taskit.presence``.
"""

from taskit.presence import TTL_INTERVALS, Announced, WorkerInfo, announce, live_workers

__all__ = ["TTL_INTERVALS", "Announced", "WorkerInfo", "announce", "live_workers"]
