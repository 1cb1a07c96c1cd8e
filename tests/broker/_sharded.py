"""Sharded kinds of the broker conformance suite: ``ShardedBroker`` over several memory brokers
on one fake clock (``memory-sharded``), so the suite holds the sharded broker to the contract as
it states it across shards (``taskit.broker.sharded``)."""

from __future__ import annotations

from taskit.broker.base import BrokerOptions
from taskit.broker.memory import MemoryBroker
from taskit.broker.sharded import ShardedBroker
from taskit.clock import Clock

__all__ = ["SHARDED_MEMORY", "SHARDS", "memory_shards"]

#: The conformance kind: three memory brokers behind one ``ShardedBroker``.
SHARDED_MEMORY = "memory-sharded"
#: How many shards the sharded kinds have.
SHARDS = 3


def memory_shards(clock: Clock, *, result_ttl: float, shards: int = SHARDS) -> ShardedBroker:
    """A ``ShardedBroker`` of ``shards`` memory brokers sharing ``clock``."""
    options = BrokerOptions(("result_ttl",), result_ttl=result_ttl)
    return ShardedBroker(
        options,
        lambda settings: [
            MemoryBroker(clock=clock, result_ttl=settings.result_ttl) for _ in range(shards)
        ],
    )
