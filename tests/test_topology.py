"""The test topologies themselves (tests/topology): the cluster starts whole, a failover (manual
or a killed master) promotes the replica, a slot migration under load moves every key; the
Sentinel set fails over and the sentinels agree. Real redis-server processes; a few seconds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode as PyNode
from redis.cluster import RedisCluster as PyCluster
from redis.exceptions import MovedError

from tests.topology import MASTER_NAME, RedisCluster, SentinelSet, slot_of
from tests.topology.cluster import SLOTS, View


def _fill(client: redis.Redis, tag: str, count: int) -> set[str]:
    keys = {f"{{{tag}}}:{n}" for n in range(count)}
    client.mset(dict.fromkeys(keys, "1"))
    return keys


@pytest.fixture
def cluster_client(redis_cluster: RedisCluster) -> Iterator[PyCluster]:
    node = redis_cluster.nodes[0]
    seed = PyNode(node.host, node.port)  # type: ignore[no-untyped-call]
    client = PyCluster(startup_nodes=[seed], decode_responses=True)
    try:
        yield client
    finally:
        client.close()


@contextmanager
def _load(client: PyCluster, tag: str) -> Iterator[list[str]]:
    """A thread SETting keys under ``{tag}`` through redis-py's cluster client (it follows
    ASK, MOVED and a failover) until the block ends; yields the keys acknowledged so far."""
    written: list[str] = []
    failed: list[redis.RedisError] = []
    stop = threading.Event()

    def run() -> None:
        n = 0
        while not stop.is_set():
            key = f"{{{tag}}}:load:{n}"
            try:
                client.set(key, "1")
            except redis.RedisError as error:  # the client gave up: the move was not followed
                failed.append(error)
                return
            written.append(key)
            n += 1

    writer = threading.Thread(target=run)
    writer.start()
    try:
        yield written
    finally:
        stop.set()
        writer.join()
    assert not failed, f"the load failed: {failed[0]!r}"
    assert written, "the load wrote nothing"


def test_cluster_starts_whole(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.seeds) == 6
    assert redis_cluster.url("app").startswith("redis+cluster://127.0.0.1:")
    assert redis_cluster.url("app").endswith("?prefix=app")
    assert len(redis_cluster.masters()) == 3
    for node in redis_cluster.nodes:
        view = View.of(node)
        assert len(view.owner) == SLOTS
        assert len(set(view.owner.values())) == 3
        assert "cluster_state:ok" in str(node.call("CLUSTER", "INFO"))
    owner = redis_cluster.owner_of("{taskit}")
    assert owner.call("SET", "{taskit}:started", "1") is True
    other = next(m for m in redis_cluster.masters() if m is not owner)
    with pytest.raises(MovedError, match=f"^{slot_of('{taskit}')} {owner.address}$"):
        other.call("GET", "{taskit}:started")


def test_cluster_failover_promotes_the_replica_under_load(
    redis_cluster: RedisCluster, cluster_client: PyCluster
) -> None:
    tag = "topology-failover"
    slot = slot_of(f"{{{tag}}}")
    old = redis_cluster.owner(slot)
    with old.client() as client:
        keys = _fill(client, tag, 50)
    with _load(cluster_client, tag) as written:
        new = redis_cluster.failover(slot)
    assert new is not old
    assert new.role() == ("master", None)
    assert old.role() == ("slave", new.port)
    assert redis_cluster.owner(slot) is new
    with new.client() as client:
        assert client.exists(*keys) == len(keys)
        assert client.exists(*written) == len(written)  # a manual failover loses nothing


def test_a_killed_master_is_replaced_and_rejoins(redis_cluster: RedisCluster) -> None:
    slot = slot_of("{topology-kill}")
    old = redis_cluster.owner(slot)
    pid = old.pid
    new = redis_cluster.kill_master(slot)
    assert new is not old
    assert redis_cluster.owner(slot) is new
    assert old.pid != pid  # killed, started again, and back as the new owner's replica
    assert old.role() == ("slave", new.port)


def test_a_slot_migrates_with_its_keys_under_load(
    redis_cluster: RedisCluster, cluster_client: PyCluster
) -> None:
    tag = "topology-migrate"
    slot = slot_of(f"{{{tag}}}")
    source = redis_cluster.owner(slot)
    with source.client() as client:
        keys = _fill(client, tag, 450)  # five batches of 100
    with _load(cluster_client, tag) as written:
        target = redis_cluster.migrate_slot(slot, batch=100)
    assert target is not source
    assert redis_cluster.owner(slot) is target
    assert source.call("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    with target.client() as client:
        assert client.exists(*keys) == len(keys)
        assert client.exists(*written) == len(written)


def test_migrate_slot_refuses_a_replica(redis_cluster: RedisCluster) -> None:
    slot = slot_of("{topology-refuse}")
    replica = redis_cluster.replica_of(redis_cluster.owner(slot))
    with pytest.raises(ValueError, match="is not a master"):
        redis_cluster.migrate_slot(slot, to=replica.address)


def test_sentinel_failover_promotes_the_replica(sentinel_set: SentinelSet) -> None:
    old = sentinel_set.master()
    old.call("SET", "topology-sentinel", "1")
    new = sentinel_set.failover(demote=True)
    assert new is not old
    assert sentinel_set.url().endswith(f"/{MASTER_NAME}")
    for sentinel in sentinel_set.sentinels:
        assert sentinel_set.reported(sentinel) == new.address
    assert new.call("GET", "topology-sentinel") == "1"
    role = old.call("ROLE")
    assert isinstance(role, list)
    assert (role[0], role[2]) == ("slave", new.port)


def test_min_replicas_to_write_is_set_on_every_data_node(tmp_path: Path) -> None:
    with SentinelSet(tmp_path, min_replicas_to_write=1) as made:
        for server in made.data:
            setting = server.call("CONFIG", "GET", "min-replicas-to-write")
            assert setting == {"min-replicas-to-write": "1"}
        assert made.master().call("SET", "k", "v") is True  # its replica is there


def test_sentinel_replaces_a_killed_master(sentinel_set: SentinelSet) -> None:
    old = sentinel_set.master()
    old.call("SET", "topology-sentinel-kill", "1")
    pid = old.pid
    new = sentinel_set.kill_master()
    assert new is not old
    assert sentinel_set.master() is new
    assert new.call("GET", "topology-sentinel-kill") == "1"
    assert old.pid != pid  # killed, then started again as the new master's replica
    role = old.call("ROLE")
    assert isinstance(role, list)
    assert (role[0], role[2], role[3]) == ("slave", new.port, "connected")
