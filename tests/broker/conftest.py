"""The broker conformance harness: one suite, every broker.

``BrokerHarness`` wraps a broker with a way to let time pass: the memory broker runs on a
``FakeClock`` that ``advance`` moves at once; a Redis broker runs on the server's clock, so
``advance`` really sleeps (tests keep those durations short).

Kinds and backends are paired here: the memory broker runs under asyncio and trio; the Redis
kinds (``_redis_kinds``: one per transport and server) under asyncio only, as the Redis broker's
transports are asyncio protocols. A test that takes the ``harness`` fixture runs on every pair.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import pytest

from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.clock import FakeClock
from tests.broker._redis_kinds import REDIS_KINDS, SHORT_KINDS, RedisHarness, open_redis_harness
from tests.broker._sharded import SHARDED_MEMORY, memory_shards

# (kind, anyio backend) pairs the conformance suite runs on.
KINDS: list[tuple[str, str]] = [
    ("memory", "asyncio"),
    ("memory", "trio"),
    *REDIS_KINDS,
]


@dataclass
class BrokerHarness:
    broker: Broker
    advance: Callable[[float], Awaitable[None]]
    kind: str


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness" in metafunc.fixturenames:
        # Added as a parametrize *mark*, ahead of pytest's own hooks: pytest then applies it and
        # leaves the parametrised ``anyio_backend`` fixture (tests/conftest.py) alone. A direct
        # ``metafunc.parametrize`` call here would parametrise ``anyio_backend`` a second time
        # and fail collection with "duplicate parametrization".
        metafunc.definition.add_marker(
            pytest.mark.parametrize(
                ("broker_kind", "anyio_backend"), KINDS, ids=[f"{k}-{b}" for k, b in KINDS]
            )
        )


@pytest.fixture
async def harness(broker_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[BrokerHarness]:
    if broker_kind == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)
            await anyio.lowlevel.checkpoint()

        broker = MemoryBroker(clock=clock, result_ttl=60.0)
        yield BrokerHarness(broker, advance, broker_kind)
        await broker.close()
        return
    if broker_kind == SHARDED_MEMORY:
        clock = FakeClock()

        async def advance_sharded(seconds: float) -> None:
            clock.advance(seconds)
            await anyio.lowlevel.checkpoint()

        sharded = memory_shards(clock, result_ttl=60.0)
        yield BrokerHarness(sharded, advance_sharded, broker_kind)
        await sharded.close()
        return
    async with open_redis_harness(broker_kind, request) as made:
        yield BrokerHarness(made.broker, made.advance, broker_kind)


@pytest.fixture(params=SHORT_KINDS)
async def rh(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    """A ``RedisHarness`` (``_redis_kinds``) for the Redis broker's own tests, on the fast
    transport to real Redis and on fakeredis (these tests run on asyncio only: they set
    ``anyio_backend`` themselves)."""
    async with open_redis_harness(request.param, request) as harness:
        yield harness
