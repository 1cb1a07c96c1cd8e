"""Test topologies on loopback ports, from Debian's redis-server: a Redis Cluster (3 masters, 3
replicas) and a Sentinel set (a master, a replica, 3 sentinels), started once per test session
by the fixtures ``redis_cluster`` and ``sentinel_set`` (tests/conftest.py), stopped by pid; and
the moves that provoke what the clients must follow (failovers, a killed master, a slot
migrated under load)."""

from tests.topology.cluster import ClusterNode, RedisCluster, slot_of
from tests.topology.process import Server
from tests.topology.sentinel import MASTER_NAME, SentinelSet

__all__ = ["MASTER_NAME", "ClusterNode", "RedisCluster", "SentinelSet", "Server", "slot_of"]
