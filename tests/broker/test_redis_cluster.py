"""The Redis broker on a Redis Cluster (tests/topology: 3 masters, a replica each): reached
through any node, following a manual failover and a slot migrated under load with no
acknowledged job lost, and a killed owner with none lost that was acknowledged before the kill
(Redis replicates asynchronously), on every connection kind (the fast transport, the sync client,
the blocking wait); a database other than 0 refused.

Each test works under a key prefix of its own, so in a slot of its own: the moves of one test
(which leave the cluster whole) never touch another's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import pytest

from taskit.broker.redis import RedisBroker
from taskit.broker.redis.transport.fast import FastClient
from taskit.broker.redis.transport.locate import locator_of
from taskit.broker.redis.transport.redispy import to_url
from taskit.broker.redis.transport.sync import BlockingClient
from taskit.errors import BrokerError, ConfigurationError
from taskit.job import JobStatus, OutcomeKind
from tests.broker._helpers import make_job, new_queue, outcome, status_of
from tests.broker._load import Counted, lost_before_the_move, under_load
from tests.topology import RedisCluster, slot_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return f"taskit-c-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def broker(redis_cluster: RedisCluster, prefix: str) -> AsyncIterator[RedisBroker]:
    made = RedisBroker(redis_cluster.url(prefix=prefix), result_ttl=600)
    try:
        yield made
    finally:
        await made.close()


def non_owners(cluster: RedisCluster, prefix: str) -> list[str]:
    """The addresses of every node but the master serving ``prefix``'s slot."""
    owner = cluster.owner_of("{" + prefix + "}")
    return [address for address in cluster.seeds if address != owner.address]


def no_loss(counted: Counted) -> None:
    assert counted.lost == [], f"{len(counted.lost)} of {len(counted.acked)} acknowledged lost"
    assert counted.errors == [], counted.errors[:5]
    assert counted.moved_at is not None
    assert len(counted.acked) > counted.moved_at[0]  # it enqueued after the move


@pytest.mark.parametrize("scheme", ["redis+cluster", "redis"])
async def test_a_node_that_does_not_own_the_slot_serves_every_call(
    redis_cluster: RedisCluster, prefix: str, scheme: str
) -> None:
    # A cluster URL of seeds that all miss the owner; or a plain URL to one of them (detected
    # as a cluster node by its first MOVED).
    others = non_owners(redis_cluster, prefix)
    url = (
        f"redis+cluster://{','.join(others)}?prefix={prefix}"
        if scheme == "redis+cluster"
        else f"redis://{others[0]}?prefix={prefix}"
    )
    broker = RedisBroker(url, result_ttl=600)
    queue = new_queue()
    try:
        [job] = await broker.enqueue([make_job(queue)])
        [held] = await broker.reserve([queue], count=1, lease=30, timeout=1)
        assert held.job.id == job.id
        assert await broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]
        assert await status_of(broker, job.id) == JobStatus.COMPLETED
        [sync] = await anyio.to_thread.run_sync(broker.enqueue_blocking, [make_job(queue)])
        assert (await broker.stats([queue]))[queue].queued == 1
        assert await status_of(broker, sync.id) == JobStatus.PENDING
    finally:
        await broker.close()
    # Every key went to the owner of the prefix's one slot.
    owner = redis_cluster.owner_of("{" + prefix + "}")
    assert owner.call("EXISTS", "{" + prefix + "}:jobs") == 1


def test_a_cluster_url_naming_another_database_is_refused() -> None:
    for url in ("redis+cluster://127.0.0.1:7000/3", "redis+cluster://127.0.0.1:7000?db=1"):
        with pytest.raises(ConfigurationError, match="only database 0"):
            RedisBroker(url)
    RedisBroker("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/0")  # 0 is fine


async def test_a_plain_url_with_a_database_on_a_cluster_node_is_refused_clearly(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    broker = RedisBroker(f"redis://{redis_cluster.seeds[0]}/2?prefix={prefix}")
    try:
        with pytest.raises(BrokerError, match=r"cluster node.*only database 0"):
            await broker.enqueue([make_job(new_queue())])
    finally:
        await broker.close()


async def test_a_manual_failover_under_load_loses_nothing(
    redis_cluster: RedisCluster, broker: RedisBroker, prefix: str
) -> None:
    slot = slot_of("{" + prefix + "}")
    before = redis_cluster.owner(slot)
    counted = await under_load(broker, new_queue(), lambda: redis_cluster.failover(slot))
    assert redis_cluster.owner(slot) is not before
    no_loss(counted)


async def test_a_killed_owner_under_load_loses_nothing_acked_before_the_kill(
    redis_cluster: RedisCluster, broker: RedisBroker, prefix: str
) -> None:
    # SIGKILL: the replica takes over after cluster-node-timeout. A write the master took but
    # had not replicated when it died can be lost (Redis's own window, microseconds on
    # loopback; taskit sends no WAIT): only a job acknowledged after the kill began may be. An
    # enqueue cut off by the kill is reported as of unknown outcome, never acknowledged.
    slot = slot_of("{" + prefix + "}")
    counted = await under_load(broker, new_queue(), lambda: redis_cluster.kill_master(slot))
    assert lost_before_the_move(counted) == [], counted.lost[:5]
    assert counted.errors == [], counted.errors[:5]
    assert counted.moved_at is not None
    assert len(counted.acked) > counted.moved_at[0]  # it enqueued after the kill


async def test_a_killed_owner_loses_nothing_acknowledged_with_replicas_1(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    # The same kill, with ``?replicas=1``: an enqueue is acknowledged only once the master's
    # replica has it (WAIT), so the replica promoted in its place has every acknowledged job.
    # While the new master has no replica (until the killed node rejoins as one), enqueues are
    # of unknown outcome, never acknowledged.
    slot = slot_of("{" + prefix + "}")
    broker = RedisBroker(f"{redis_cluster.url(prefix=prefix)}&replicas=1", result_ttl=600)
    try:
        counted = await under_load(broker, new_queue(), lambda: redis_cluster.kill_master(slot))
    finally:
        await broker.close()
    assert counted.lost == [], f"{len(counted.lost)} of {len(counted.acked)} acknowledged lost"
    assert counted.errors == [], counted.errors[:5]
    assert counted.moved_at is not None
    assert len(counted.acked) > counted.moved_at[0]  # it enqueued after the kill


async def test_a_slot_migrated_under_load_loses_nothing(
    redis_cluster: RedisCluster, broker: RedisBroker, prefix: str
) -> None:
    # While keys move, the source answers ASK for those already moved and TRYAGAIN for a
    # script whose keys are split; then MOVED.
    slot = slot_of("{" + prefix + "}")
    before = redis_cluster.owner(slot)
    counted = await under_load(
        broker, new_queue(), lambda: redis_cluster.migrate_slot(slot, batch=5)
    )
    assert redis_cluster.owner(slot) is not before
    no_loss(counted)


async def test_sync_enqueues_follow_a_failover(
    redis_cluster: RedisCluster, broker: RedisBroker, prefix: str
) -> None:
    slot = slot_of("{" + prefix + "}")
    counted = await under_load(broker, new_queue(), lambda: redis_cluster.failover(slot), sync=True)
    no_loss(counted)


async def test_a_blocked_reserve_follows_a_failover(
    redis_cluster: RedisCluster, broker: RedisBroker, prefix: str
) -> None:
    # A reserve blocked in BLPOP on the old master (its wait connection) when the slot's
    # master changes: it must still get a job enqueued on the new one.
    slot = slot_of("{" + prefix + "}")
    queue = new_queue()
    await broker.enqueue([make_job(queue)])
    await broker.reserve([queue], count=1, lease=30, timeout=0)  # connections made, queue empty
    got = []

    async def reserve() -> None:
        got.extend(await broker.reserve([queue], count=1, lease=30, timeout=15))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(reserve)
            await anyio.sleep(0.3)  # blocked by now
            await anyio.to_thread.run_sync(redis_cluster.failover, slot)
            [job] = await broker.enqueue([make_job(queue)])
    assert [held.job.id for held in got] == [job.id]


async def test_the_redis_py_transport_follows_a_failover_too(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    url = redis_cluster.url(prefix=prefix)
    broker = RedisBroker(url, result_ttl=600, connect=to_url(url.partition("?")[0]))
    slot = slot_of("{" + prefix + "}")
    try:
        counted = await under_load(broker, new_queue(), lambda: redis_cluster.failover(slot))
    finally:
        await broker.close()
    no_loss(counted)


async def test_ask_is_followed_while_a_slot_migrates(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    # A key already moved to the importing node: its old owner answers ASK; the client asks
    # the new node once, ASKING first (fast and blocking clients alike).
    slot = slot_of("{" + prefix + "}")
    key = "{" + prefix + "}:k"
    source = redis_cluster.owner(slot)
    target = next(m for m in redis_cluster.masters() if m is not source)
    source.call("SET", key, "v")
    target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
    source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
    source.call("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", key)
    locator = locator_of(redis_cluster.url())
    locator.aim("{" + prefix + "}")
    fast = FastClient(locator)
    try:
        assert await fast.execute("GET", key) == b"v"
        blocking = BlockingClient(locator)
        assert await anyio.to_thread.run_sync(blocking.execute, "GET", key) == b"v"
        blocking.close()
        assert locator.current() is not None
        assert locator.current().port == source.port  # ASK moves one command, not the slot
    finally:
        await fast.aclose()
        for node in [
            target,
            source,
            *(m for m in redis_cluster.masters() if m not in (target, source)),
        ]:
            node.call("CLUSTER", "SETSLOT", slot, "NODE", target.id)
    assert redis_cluster.owner(slot) is target
