"""Test topologies on loopback ports, from Debian's redis-server, killed by pid.

* ``RedisCluster``: 3 masters and a replica each, ``cluster-node-timeout`` 1 s; ``seeds``,
  ``url(prefix)``, ``owner(slot)`` / ``owner_of(key)``, ``replica_of(node)``, ``masters()``,
  and the moves a client must follow: ``failover(slot)`` (CLUSTER FAILOVER),
  ``kill_master(slot)`` (SIGKILL, the replica takes over), ``migrate_slot(slot, to)``
  (IMPORTING / MIGRATING / MIGRATE in batches / SETSLOT NODE, safe under load).
* ``SentinelSet``: a master, its replica and 3 sentinels (master name ``taskit``, quorum 2);
  ``url(prefix)``, ``master()``, ``failover()`` (SENTINEL FAILOVER), ``kill_master()``.

The session fixtures ``redis_cluster`` and ``sentinel_set`` (tests/conftest.py) start one of
each per test session; every move waits until the topology agrees and leaves it whole."""

from tests.topology.cluster import ClusterNode, RedisCluster, slot_of
from tests.topology.process import Server
from tests.topology.sentinel import MASTER_NAME, SentinelSet

__all__ = ["MASTER_NAME", "ClusterNode", "RedisCluster", "SentinelSet", "Server", "slot_of"]
