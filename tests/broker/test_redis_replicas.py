"""``?replicas=N``: each acknowledged write waits until N replicas have it (``WAIT``, sent right
behind the script), else ``BrokerOutcomeUnknownError`` naming the numbers; without the option
nothing waits. On the session's Sentinel set (a master and one replica) and, for a server with
too few replicas, on the plain Redis of the other tests."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio.to_thread
import pytest
import redis

from taskit.broker.redis import RedisBroker
from taskit.errors import BrokerOutcomeUnknownError
from taskit.job import JobStatus, OutcomeKind
from tests.broker._helpers import make_job, new_queue, outcome, status_of
from tests.topology import SentinelSet, Server

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return f"taskit-r-{uuid.uuid4().hex[:10]}"


def _with(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _replica(sentinels: SentinelSet) -> tuple[Server, Server]:
    """The master and its replica, once the replica is linked and acknowledging."""
    sentinels.wait_settled()
    master = sentinels.master()
    [replica] = [server for server in sentinels.data if server is not master]
    return master, replica


@contextmanager
def _frozen(server: Server) -> Iterator[None]:
    """``server`` stopped (SIGSTOP) for the block: it takes and acknowledges nothing."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def test_acknowledged_writes_are_on_the_replica_when_acknowledged(
    sentinel_set: SentinelSet, prefix: str
) -> None:
    _, replica = await anyio.to_thread.run_sync(_replica, sentinel_set)
    broker = RedisBroker(_with(sentinel_set.url(prefix=prefix), "replicas=1"), result_ttl=600)
    jobs = "{" + prefix + "}:jobs"
    queue = new_queue()
    try:
        [job] = await broker.enqueue([make_job(queue)])
        assert replica.call("HEXISTS", jobs, job.id)  # there when the enqueue returned
        [sync] = await anyio.to_thread.run_sync(broker.enqueue_blocking, [make_job(queue)])
        assert replica.call("HEXISTS", jobs, sync.id)
        [held] = await broker.reserve([queue], count=1, lease=30, timeout=1)
        assert await broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]
        assert await status_of(broker, held.job.id) == JobStatus.COMPLETED
        assert await broker.cancel(sync.id if held.job.id == job.id else job.id)
    finally:
        await broker.close()


async def test_fewer_replicas_than_asked_raise_naming_the_numbers(
    sentinel_set: SentinelSet, prefix: str
) -> None:
    master, _ = await anyio.to_thread.run_sync(_replica, sentinel_set)
    url = _with(sentinel_set.url(prefix=prefix), "replicas=2&replicas_timeout=50")
    broker = RedisBroker(url, result_ttl=600)
    job = make_job(new_queue())
    try:
        with pytest.raises(BrokerOutcomeUnknownError) as caught:
            await broker.enqueue([job])
        assert "only 1 of the 2 replicas asked for (?replicas=2) acknowledged it within 50 ms" in (
            str(caught.value)
        )
        # The write ran on the master: the same ids again store nothing twice.
        assert master.call("HEXISTS", "{" + prefix + "}:jobs", job.id)
        with pytest.raises(BrokerOutcomeUnknownError, match="only 1 of the 2"):
            await anyio.to_thread.run_sync(broker.enqueue_blocking, [job])
        assert (await broker.stats([job.queue]))[job.queue].queued == 1
    finally:
        await broker.close()


async def test_a_frozen_replica_fails_the_wait_and_nothing_waits_without_the_option(
    sentinel_set: SentinelSet, prefix: str
) -> None:
    _, replica = await anyio.to_thread.run_sync(_replica, sentinel_set)
    url = sentinel_set.url(prefix=prefix)
    waiting = RedisBroker(_with(url, "replicas=1&replicas_timeout=200"), result_ttl=600)
    plain = RedisBroker(url, result_ttl=600)
    queue = new_queue()
    try:
        await waiting.enqueue([make_job(queue)])  # connected, scripts loaded
        await plain.enqueue([make_job(queue)])
        with _frozen(replica):
            with pytest.raises(BrokerOutcomeUnknownError, match="only 0 of the 1 replicas"):
                await waiting.enqueue([make_job(queue)])
            with anyio.fail_after(0.5):  # no WAIT: not held up by the frozen replica
                await plain.enqueue([make_job(queue)])
    finally:
        await waiting.close()
        await plain.close()


async def test_a_server_without_enough_replicas_fails_every_acknowledged_write(
    redis_url: str, prefix: str
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        have = int(client.info("replication")["connected_slaves"])
    url = _with(redis_url, f"prefix={prefix}&replicas={have + 1}&replicas_timeout=20")
    broker = RedisBroker(url, result_ttl=600)
    queue = new_queue()
    try:
        with pytest.raises(BrokerOutcomeUnknownError, match=f"only {have} of the {have + 1}"):
            await broker.enqueue([make_job(queue)])
        [held] = await broker.reserve([queue], count=1, lease=30, timeout=1)  # not waited for
        with pytest.raises(BrokerOutcomeUnknownError, match=f"only {have} of the {have + 1}"):
            await broker.settle([outcome(held, OutcomeKind.COMPLETE)])
        assert await status_of(broker, held.job.id) == JobStatus.COMPLETED  # it ran
        assert await broker.stats([queue])  # reads are not waited for either
    finally:
        await broker.close()
