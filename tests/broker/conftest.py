"""The broker conformance harness: one suite, every broker.

``BrokerHarness`` wraps a broker with a way to let time pass: the memory broker runs on a
``FakeClock`` that ``advance`` moves at once; a Redis broker runs on the server's clock, so
``advance`` really sleeps (tests keep those durations short).

Kinds and backends are paired here: the memory broker runs under asyncio and trio, and so does
the SQLite broker (``sqlite``: a database file of the test's own, on a ``FakeClock``, on the
conformance modules of what it builds so far: ``_sqlite``); the Redis
kinds (``_redis_kinds``: one per transport and server) under asyncio only, as the Redis broker's
transports are asyncio protocols; the sharded kinds (``_sharded``: a ``ShardedBroker`` of three
memory or Redis brokers) under asyncio. A test that takes the ``harness`` fixture runs on every
pair; one that takes ``sharded_harness`` (what holds across shards) on the sharded kinds only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest

from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.broker.sharded import ShardedBroker
from taskit.broker.sqlite import SqliteBroker
from taskit.clock import FakeClock
from tests.broker._redis_kinds import REDIS_KINDS, SHORT_KINDS, RedisHarness, open_redis_harness
from tests.broker._sharded import SHARDED, SHARDED_KINDS, open_sharded
from tests.broker._sqlite import runs_on_sqlite

# (kind, anyio backend) pairs the conformance suite runs on.
KINDS: list[tuple[str, str]] = [
    ("memory", "asyncio"),
    ("memory", "trio"),
    ("sqlite", "asyncio"),
    ("sqlite", "trio"),
    *REDIS_KINDS,
    *SHARDED_KINDS,
]


@dataclass
class BrokerHarness:
    broker: Broker
    advance: Callable[[float], Awaitable[None]]
    kind: str


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness" in metafunc.fixturenames:
        kinds = SHARDED_KINDS if "sharded_harness" in metafunc.fixturenames else KINDS
        module = metafunc.module.__name__.rpartition(".")[2]
        if not runs_on_sqlite(module, metafunc.function.__name__):
            kinds = [(kind, backend) for kind, backend in kinds if kind != "sqlite"]
        # Added as a parametrize *mark*, ahead of pytest's own hooks: pytest then applies it and
        # leaves the parametrised ``anyio_backend`` fixture (tests/conftest.py) alone. A direct
        # ``metafunc.parametrize`` call here would parametrise ``anyio_backend`` a second time
        # and fail collection with "duplicate parametrization".
        metafunc.definition.add_marker(
            pytest.mark.parametrize(
                ("broker_kind", "anyio_backend"), kinds, ids=[f"{k}-{b}" for k, b in kinds]
            )
        )


@asynccontextmanager
async def open_harness(
    kind: str, request: pytest.FixtureRequest, *, result_ttl: float | None = 60.0
) -> AsyncIterator[BrokerHarness]:
    """A harness on a broker of ``kind`` whose result TTL is ``result_ttl`` seconds (None: the
    default, ``Settings().result_ttl``)."""
    if kind == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)
            await anyio.lowlevel.checkpoint()

        broker = MemoryBroker(clock=clock, result_ttl=result_ttl)
        try:
            yield BrokerHarness(broker, advance, kind)
        finally:
            await broker.close()
        return
    if kind == "sqlite":
        clock = FakeClock()

        async def advance_sqlite(seconds: float) -> None:
            clock.advance(seconds)
            await anyio.lowlevel.checkpoint()

        path = request.getfixturevalue("tmp_path") / "broker.sqlite3"
        made = SqliteBroker(path, clock=clock, result_ttl=result_ttl)
        try:
            yield BrokerHarness(made, advance_sqlite, kind)
        finally:
            await made.close()
        return
    if kind in SHARDED:
        async with open_sharded(kind, request, result_ttl=result_ttl) as (sharded, passing):
            yield BrokerHarness(sharded, passing, kind)
        return
    async with open_redis_harness(kind, request, result_ttl=result_ttl) as made:
        yield BrokerHarness(made.broker, made.advance, kind)


@pytest.fixture
async def harness(broker_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[BrokerHarness]:
    async with open_harness(broker_kind, request) as made:
        yield made


@pytest.fixture
def sharded_harness(harness: BrokerHarness) -> BrokerHarness:
    """``harness`` on the sharded kinds only (``SHARDED_KINDS``), for what holds across shards."""
    assert isinstance(harness.broker, ShardedBroker)
    return harness


@pytest.fixture(params=SHORT_KINDS)
async def rh(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    """A ``RedisHarness`` (``_redis_kinds``) for the Redis broker's own tests, on the fast
    transport to real Redis and on fakeredis (these tests run on asyncio only: they set
    ``anyio_backend`` themselves)."""
    async with open_redis_harness(request.param, request) as harness:
        yield harness
