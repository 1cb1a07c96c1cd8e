"""Brokers: where jobs wait. ``from_url`` picks one by URL scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.errors import ConfigurationError

__all__ = ["Broker", "MemoryBroker", "from_url"]


def from_url(url: str, *, result_ttl: float = 86400.0) -> Broker:
    """A new broker for ``url``: ``memory://`` (each call a fresh, empty broker)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryBroker(result_ttl=result_ttl)
    if scheme in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"broker URL scheme {scheme!r} needs the Redis broker, which this version lacks"
        )
    raise ConfigurationError(
        f"unsupported broker URL scheme {scheme!r}: use memory:// (or redis://, rediss://, unix://)"
    )
