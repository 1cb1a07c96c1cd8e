"""Brokers: where jobs wait. ``from_url`` picks one by URL scheme.

``RedisBroker`` is imported on first use, so the core works without the ``redis`` package.
``SqliteBroker`` (the standard library's ``sqlite3``) needs no extra; it is imported on first use
too, so a process on another broker does not load it (a worker's memory, issue 19), and so is
``MemoryBroker`` (its package is a tenth of a Redis worker's imports; issue 19's start time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskit._urls import check_sqlite_file, parse_broker_url, redact_url
from taskit.broker.base import Broker
from taskit.errors import ConfigurationError

if TYPE_CHECKING:
    from taskit.broker.memory import MemoryBroker
    from taskit.broker.redis import RedisBroker
    from taskit.broker.sqlite import SqliteBroker

__all__ = ["Broker", "MemoryBroker", "RedisBroker", "SqliteBroker", "from_url"]


def from_url(url: str, *, result_ttl: float | None = None, timeout: float | None = None) -> Broker:
    """A new broker for ``url``: ``memory://`` (each call a fresh, empty broker), or
    ``sqlite:///relative.db`` / ``sqlite:////absolute.db`` for a ``SqliteBroker`` on that file
    (a relative path is made absolute here, against the current directory; the file is created
    on first use, its directory must exist; ``?synchronous=full`` for commits that survive a
    power loss), or a Redis
    URL (``redis://``, ``rediss://`` (TLS), ``unix://``, ``redis+cluster://``,
    ``redis+sentinel://``...) for a ``RedisBroker`` (needs the ``redis`` extra:
    ``pip install taskit[redis]``), or, with ``?shards=N`` (N from 2 to 64), a
    ``ShardedBroker`` of N of them (``taskit.broker.redis.shards.sharded_redis``); their
    connects and replies take at most ``timeout`` seconds. Options not given (here or in the
    URL) come from the settings of the App it is given to (``Broker.configure``). Raises
    ``ConfigurationError`` for any other scheme, or a URL that names a bad port, db or option
    (``taskit._urls``)."""
    parsed = parse_broker_url(url)
    if parsed.scheme == "memory":
        from taskit.broker.memory import MemoryBroker

        return MemoryBroker(result_ttl=result_ttl)
    if parsed.path is not None:
        from taskit.broker.sqlite import SqliteBroker

        path = check_sqlite_file(parsed.path, redact_url(url))
        return SqliteBroker(path, result_ttl=result_ttl, synchronous=parsed.synchronous or "normal")
    if parsed.shards > 1:
        try:
            from taskit.broker.redis.shards import sharded_redis
        except ImportError as exc:
            raise _needs_redis(exc) from exc
        return sharded_redis(url, shards=parsed.shards, result_ttl=result_ttl, timeout=timeout)
    return _redis_broker_class()(url, result_ttl=result_ttl, timeout=timeout)


def _redis_broker_class() -> type[RedisBroker]:
    try:
        from taskit.broker.redis import RedisBroker
    except ImportError as exc:
        raise _needs_redis(exc) from exc
    return RedisBroker


def _needs_redis(exc: ImportError) -> ConfigurationError:
    return ConfigurationError(
        f"Redis broker URLs need the redis package ({exc}): pip install 'taskit[redis]'"
    )


def __getattr__(name: str) -> Any:
    if name == "MemoryBroker":
        from taskit.broker.memory import MemoryBroker

        return MemoryBroker
    if name == "RedisBroker":
        return _redis_broker_class()
    if name == "SqliteBroker":
        from taskit.broker.sqlite import SqliteBroker

        return SqliteBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
