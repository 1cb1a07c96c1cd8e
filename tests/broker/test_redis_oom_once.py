"""Once keys on a Redis out of memory (``maxmemory``, ``noeviction``): a run that holds its key
still records its success or releases the key; taking a new key is refused with
``BrokerOutOfMemoryError`` and takes nothing (the guard's body then never runs).

Like ``test_redis_oom``: a redis-server of the test's own, filled with ballast until it refuses
writes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from taskit.broker.base import OnceState
from taskit.broker.redis import RedisBroker
from taskit.errors import BrokerOutOfMemoryError
from tests.broker._full import empty, fill, small_redis
from tests.broker._redis_kinds import OwnRedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[OwnRedisServer]:
    with small_redis() as made:
        yield made


@pytest.fixture
async def broker(server: OwnRedisServer) -> AsyncIterator[RedisBroker]:
    made = RedisBroker(server.url, prefix="oom")
    try:
        yield made
    finally:
        await made.close()


async def test_held_once_keys_end_on_a_full_redis_and_new_ones_are_refused(
    broker: RedisBroker, server: OwnRedisServer
) -> None:
    assert await broker.begin_once("done", "a", hold=60.0) is OnceState.TAKEN
    assert await broker.begin_once("failed", "a", hold=60.0) is OnceState.TAKEN
    await fill(server.url)
    assert await broker.end_once("done", "a", done_for=3600.0) is True  # the success is kept
    assert await broker.end_once("failed", "a", done_for=None) is True  # a release frees
    with pytest.raises(BrokerOutOfMemoryError):
        await broker.begin_once("new", "b", hold=60.0)
    assert await broker.begin_once("done", "b", hold=60.0) is OnceState.DONE
    await empty(server.url)
    assert await broker.begin_once("new", "b", hold=60.0) is OnceState.TAKEN  # nothing was taken
    assert await broker.begin_once("failed", "b", hold=60.0) is OnceState.TAKEN
