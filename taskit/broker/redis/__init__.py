"""The Redis broker: ``RedisBroker`` (in ``broker``), and the layers it is built from.

``taskit.broker.redis.RedisBroker`` is imported on first use, so the memory broker can share the
record codec (``records``) without the ``redis`` package installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskit.broker.redis.broker import RedisBroker

__all__ = ["RedisBroker"]


def __getattr__(name: str) -> Any:
    if name == "RedisBroker":
        from taskit.broker.redis.broker import RedisBroker

        return RedisBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
