"""Sharded kinds of the broker conformance suite, so the suite holds the sharded broker to the
contract as it states it across shards (``taskit.broker.sharded``):

* ``memory-sharded``: ``ShardedBroker`` over three memory brokers on one fake clock;
* ``fast-sharded``: over three ``RedisBroker``s on the real server (``redis_url``), each under a
  prefix (hash tag) of its own;
* ``fast-cluster-sharded``: the same on the session's Redis Cluster (``redis_cluster``).

The Redis kinds run only with ``TASKIT_TEST_CLUSTER=1`` (the cluster profile, like
``fast-cluster`` in ``_redis_kinds``): the suite on ``fast-sharded`` takes about 35 s, more than
the default run can spend; ``memory-sharded`` runs in every run.

``open_sharded(kind, request, result_ttl=...)`` yields such a broker and its way to let time
pass; a Redis kind's keys are deleted afterwards.

A sharded broker keeps the orders of ``Broker`` (priority, FIFO, fair turns, the order of
queues, listing orders) among the jobs of one shard only. A test of such an order takes its job
ids from ``shard_id``: on a sharded broker they all land in one shard (so the test checks the
guarantee as stated), on any other broker they are ordinary fresh ids. ``spread_ids`` gives ids
that cover every shard, for the tests of what holds across shards.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.asyncio import Redis

from taskit.broker.base import Broker, BrokerOptions
from taskit.broker.memory import MemoryBroker
from taskit.broker.placement import shard_of
from taskit.broker.redis import RedisBroker
from taskit.broker.redis.shards import sharded_redis
from taskit.broker.sharded import ShardedBroker
from taskit.clock import Clock, FakeClock

__all__ = [
    "SHARDED",
    "SHARDED_CLUSTER",
    "SHARDED_KINDS",
    "SHARDED_MEMORY",
    "SHARDED_REAL",
    "SHARDS",
    "memory_shards",
    "open_sharded",
    "shard_count",
    "shard_id",
    "shard_name",
    "spread_ids",
]

#: The conformance kind: three memory brokers behind one ``ShardedBroker``.
SHARDED_MEMORY = "memory-sharded"
#: Three Redis brokers on the real server behind one ``ShardedBroker``.
SHARDED_REAL = "fast-sharded"
#: Three Redis brokers on the session's Redis Cluster behind one ``ShardedBroker``.
SHARDED_CLUSTER = "fast-cluster-sharded"
#: How many shards the sharded kinds have.
SHARDS = 3
#: (kind, anyio backend) pairs of the sharded kinds in the conformance suite.
SHARDED_KINDS: list[tuple[str, str]] = [(SHARDED_MEMORY, "asyncio")]
if os.environ.get("TASKIT_TEST_CLUSTER") == "1":
    SHARDED_KINDS += [(SHARDED_REAL, "asyncio"), (SHARDED_CLUSTER, "asyncio")]
#: Every sharded kind's name.
SHARDED = frozenset({SHARDED_MEMORY, SHARDED_REAL, SHARDED_CLUSTER})

Advance = Callable[[float], Awaitable[None]]


def memory_shards(clock: Clock, *, result_ttl: float | None, shards: int = SHARDS) -> ShardedBroker:
    """A ``ShardedBroker`` of ``shards`` memory brokers sharing ``clock``."""
    options = BrokerOptions(("result_ttl",), result_ttl=result_ttl)
    return ShardedBroker(
        options,
        lambda settings: [
            MemoryBroker(clock=clock, result_ttl=settings.result_ttl) for _ in range(shards)
        ],
    )


@asynccontextmanager
async def open_sharded(
    kind: str, request: pytest.FixtureRequest, *, result_ttl: float | None = 60.0
) -> AsyncIterator[tuple[ShardedBroker, Advance]]:
    """A sharded broker of ``kind`` (module docstring) with ``result_ttl``, and its way to let
    time pass (a fake clock's for memory; a real sleep on Redis, whose clock is the server's)."""
    if kind == SHARDED_MEMORY:
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)
            await anyio.lowlevel.checkpoint()

        broker = memory_shards(clock, result_ttl=result_ttl)
        try:
            yield broker, advance
        finally:
            await broker.close()
        return
    prefix = f"taskit-test-{uuid.uuid4().hex[:12]}"
    if kind == SHARDED_REAL:
        url = request.getfixturevalue("redis_url")
    elif kind == SHARDED_CLUSTER:
        cluster = request.getfixturevalue("redis_cluster")
        url = cluster.url()
    else:  # pragma: no cover - a typo in a parametrisation
        raise ValueError(f"unknown sharded kind {kind!r}")
    broker = sharded_redis(url, shards=SHARDS, prefix=prefix, result_ttl=result_ttl)
    shard_prefixes = [
        shard.keys.prefix for shard in broker.shards if isinstance(shard, RedisBroker)
    ]
    try:
        yield broker, anyio.sleep
    finally:
        await broker.close()
        for shard_prefix in shard_prefixes:
            tag = "{" + shard_prefix + "}"
            if kind == SHARDED_CLUSTER:
                owner = cluster.owner_of(tag)
                client = Redis(host=owner.host, port=owner.port)
            else:
                client = Redis.from_url(url)
            try:
                doomed = [key async for key in client.scan_iter(match=f"{tag}*", count=500)]
                if doomed:
                    await client.delete(*doomed)
            finally:
                await client.aclose()


def shard_count(broker: Broker) -> int:
    """How many shards ``broker`` has: 1 for a broker that is not sharded."""
    return broker.count if isinstance(broker, ShardedBroker) else 1


def shard_id(broker: Broker, stem: str = "", *, shard: int = 0) -> str:
    """A fresh job id, ``stem`` followed by a unique tail, that a job without limits, dedup or
    workflow is placed by in shard ``shard`` of ``broker`` (any shard number on a broker that is
    not sharded: every id is in its one shard)."""
    count = shard_count(broker)
    while True:
        made = f"{stem}{uuid.uuid4().hex}"
        if shard_of(made, count) == shard % count:
            return made


def shard_name(broker: Broker, name: str, *, shard: int = 0) -> str:
    """The id ``name`` when it is in shard ``shard`` of ``broker`` (always, on a broker that is
    not sharded), else ``name`` with the first tail ``"~<n>"`` that puts it there: the same id
    for the same name each time, so a test can name its jobs and find them by name."""
    count = shard_count(broker)
    made = name
    for n in itertools.count():
        if shard_of(made, count) == shard % count:
            break
        made = f"{name}~{n}"
    return made


def spread_ids(broker: Broker, n: int, stem: str = "") -> list[str]:
    """``n`` fresh job ids in shards 0, 1, ... in turn (so every shard gets some once ``n`` is at
    least the shard count), each ``stem`` plus its index and a unique tail."""
    turn = itertools.cycle(range(shard_count(broker)))
    return [shard_id(broker, f"{stem}{i:03d}-", shard=next(turn)) for i in range(n)]
