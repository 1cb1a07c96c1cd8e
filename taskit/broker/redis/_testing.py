"""The Redis broker's one seam for taskit's own tests: white-box views of its transports and the
hooks tests use to count or provoke what users cannot. Not a public API (it may change with the
broker's inside); users' tests want ``taskit.testing``.

Each function takes the broker it looks into. What a user may want to know (the effective
``timeout``, the redacted ``url``, ``keys``) is a public property of the broker instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from taskit.broker.redis.base import RedisBase
from taskit.broker.redis.broker import RedisBroker
from taskit.broker.redis.connections import Pair
from taskit.broker.redis.requests import Leased
from taskit.broker.redis.transport.sync import BlockingClient

__all__ = ["blocking_clients", "check_server_soon", "count_plain_reserves", "transports", "url_of"]


def transports(broker: RedisBase) -> Pair:
    """The transports the broker uses on the running event loop (``commands`` and ``waits``),
    made on first use as a call would."""
    return broker._conn.pair()


def blocking_clients(broker: RedisBase) -> list[BlockingClient]:
    """The blocking connections (``enqueue_blocking``'s): the one threads share (once made),
    then the pool's idle ones, most recently used last."""
    return broker._conn.blocking_clients()


def url_of(broker: RedisBase) -> str:
    """The URL the broker connects to, password included (``broker.url`` hides it)."""
    return broker._url


def check_server_soon(broker: RedisBase) -> None:
    """Make the broker's server check (restart, eviction policy, damaged epoch key: ``watch``)
    due again, so the next script call runs it."""
    broker._watch._due = 0.0


@contextmanager
def count_plain_reserves(broker: RedisBroker) -> Iterator[list[int]]:
    """Count the broker's plain reserve script calls (not those pipelined behind a wait) while
    the block runs: the yielded list's one item is the count so far."""
    calls = [0]
    plain = broker._reserve_once

    async def counted(queues: Sequence[str], count: int, lease: float) -> Leased:
        calls[0] += 1
        return await plain(queues, count, lease)

    broker._reserve_once = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del broker._reserve_once  # the class's method again
