"""A Redis Cluster of 3 masters and 3 replicas on loopback ports, and the moves a test makes on
it while load runs: a manual failover, a killed master, a slot migrated key by key."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType

from redis.crc import key_slot

from tests.topology.process import (
    Server,
    free_ports,
    redis_server_binary,
    replicates,
    wait_until,
)

__all__ = ["ClusterNode", "RedisCluster", "slot_of"]

SLOTS = 16384
#: ``cluster-node-timeout`` (ms): a killed master is replaced about this long after it dies.
NODE_TIMEOUT_MS = 1000
#: A manual failover that has not moved the slot in this long (s; Redis gives up on its own
#: after 5 s) is asked for again, at most this many times.
MANUAL_FAILOVER = 6.0
FAILOVER_TRIES = 3


def slot_of(key: str) -> int:
    """The cluster slot of ``key`` (its ``{hash tag}`` if it has one): ``slot_of("{taskit}")``
    is the slot of every key of the default prefix."""
    return int(key_slot(key.encode()))


class ClusterNode(Server):
    """A cluster node: a ``Server`` with its cluster id (kept across restarts in nodes.conf)."""

    def __init__(self, binary: str, directory: Path, port: int, bus: int, args: list[str]):
        super().__init__(binary, directory, port, args)
        self.bus = bus
        self.id = ""

    def __repr__(self) -> str:
        return f"ClusterNode({self.address}, id={self.id[:8]})"

    def role(self) -> tuple[str, int | None]:
        """``("master", None)``, or ``("slave", <port of its master>)`` once its link is up
        (``("slave", None)`` while it is not)."""
        reply = self.call("ROLE")
        assert isinstance(reply, list)
        if reply[0] == "master":
            return "master", None
        return "slave", int(reply[2]) if reply[3] == "connected" else None


@dataclass
class View:
    """One node's CLUSTER NODES: every node's flags, master id and slots."""

    flags: dict[str, set[str]] = field(default_factory=dict)
    master_of: dict[str, str] = field(default_factory=dict)
    owner: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, node: ClusterNode) -> View:
        text = node.call("CLUSTER", "NODES")
        assert isinstance(text, str)
        view = cls()
        for line in text.splitlines():
            parts = line.split()
            node_id, flags, master = parts[0], set(parts[2].split(",")), parts[3]
            view.flags[node_id] = flags
            view.master_of[node_id] = master
            for item in parts[8:]:
                if item.startswith("["):  # [slot->-id] / [slot-<-id]: a migration under way
                    continue
                first, _, last = item.partition("-")
                for slot in range(int(first), int(last or first) + 1):
                    view.owner[slot] = node_id
        return view


class RedisCluster:
    """Six redis-server processes in cluster mode (3 masters, a replica each), no persistence
    (``appendonly=True`` for AOF), ``cluster-node-timeout`` 1 s.

    Start with ``with RedisCluster() as cluster:`` (or ``start()`` / ``stop()``); the nodes
    are killed by pid. Every method waits until the whole cluster agrees before returning.
    """

    def __init__(self, directory: Path | None = None, *, appendonly: bool = False) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise AssertionError("redis-server is not installed (a Redis Cluster needs it)")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="taskit-cluster-")
            directory = Path(self._tmp.name)
        self.directory = directory
        ports = free_ports(12)
        self.nodes = [
            ClusterNode(binary, self.directory / str(port), port, bus,
                        _node_args(port, bus, appendonly))
            for port, bus in zip(ports[:6], ports[6:], strict=True)
        ]  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> RedisCluster:
        """Start the six nodes, join them, give each master a third of the slots, attach a
        replica to each, and wait for ``cluster_state:ok`` everywhere: about 2 s, the time a
        master waits after it starts before it says ok."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for node in self.nodes:
            node.launch()
        for epoch, node in enumerate(self.nodes, start=1):
            node.wait_up()
            node.id = str(node.call("CLUSTER", "MYID"))
            # distinct epochs up front, as redis-cli --cluster create does: no collisions to settle
            node.call("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            first.call("CLUSTER", "MEET", node.host, node.port, node.bus)
        masters, replicas = self.nodes[:3], self.nodes[3:]
        for index, master in enumerate(masters):
            low, high = index * SLOTS // 3, (index + 1) * SLOTS // 3 - 1
            master.call("CLUSTER", "ADDSLOTSRANGE", low, high)
        for master, replica in zip(masters, replicas, strict=True):
            wait_until(
                partial(_knows, replica, master),
                f"{replica.address} learning of {master.address}",
            )
            replica.call("CLUSTER", "REPLICATE", master.id)
        self._wait_healthy()

    def stop(self) -> None:
        """SIGKILL every node and remove the directory (if it made it)."""
        for node in self.nodes:
            node.kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- reading -----------------------------------------------------------------------------
    @property
    def seeds(self) -> list[str]:
        """Every node's ``127.0.0.1:<port>``."""
        return [node.address for node in self.nodes]

    def url(self, prefix: str | None = None, scheme: str = "redis+cluster") -> str:
        """``redis+cluster://<every node>`` with taskit's ``?prefix=`` when given."""
        query = f"?prefix={prefix}" if prefix is not None else ""
        return f"{scheme}://{','.join(self.seeds)}{query}"

    def node(self, address: str) -> ClusterNode:
        """The node listening on ``address`` (``host:port``)."""
        for node in self.nodes:
            if node.address == address:
                return node
        raise ValueError(f"no node of this cluster listens on {address}")

    def masters(self) -> list[ClusterNode]:
        """The live nodes that are masters now."""
        return [node for node in self._live() if node.role()[0] == "master"]

    def owner(self, slot: int) -> ClusterNode:
        """The master serving ``slot``, once every live node agrees on it."""
        agreed: list[ClusterNode] = []

        def agree() -> bool:
            owners = {View.of(node).owner.get(slot) for node in self._live()}
            agreed[:] = [node for node in self.nodes if {node.id} == owners and node.alive]
            return bool(agreed)

        wait_until(agree, f"every node agreeing on the owner of slot {slot}")
        return agreed[0]

    def owner_of(self, key: str) -> ClusterNode:
        """The master serving ``key``'s slot (``owner_of("{taskit}")``: the default prefix's)."""
        return self.owner(slot_of(key))

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        """A live replica of ``master`` with its link up (waits for one)."""
        found: list[ClusterNode] = []

        def linked() -> bool:
            found[:] = [n for n in self._live() if n is not master and replicates(n, master)]
            return bool(found)

        wait_until(linked, f"a replica of {master.address} linked")
        return found[0]

    # -- moves -------------------------------------------------------------------------------
    def failover(self, slot: int) -> ClusterNode:
        """CLUSTER FAILOVER on the replica of ``slot``'s master (a manual failover: the master
        stops writes until the replica caught up, so nothing acknowledged is lost). Returns the
        new owner once every node agrees and the old master replicates it."""
        old = self.owner(slot)
        for _ in range(FAILOVER_TRIES):
            new = self.replica_of(old)
            new.call("CLUSTER", "FAILOVER")
            try:
                wait_until(partial(self._owned_by, slot, new), "failover", MANUAL_FAILOVER)
            except AssertionError:
                # Seen on Redis 7.0: a replica that was master earlier in the session wins
                # its election at once on a stale epoch, and the next configuration turns it
                # back into a replica (the log says "Failover election won", then
                # "Configuration change detected"). Nothing moved: ask again.
                old = self.owner(slot)
                continue
            return self._taken_over(slot, old, new)
        raise AssertionError(f"slot {slot}: no manual failover took in {FAILOVER_TRIES} tries")

    def _owned_by(self, slot: int, node: ClusterNode) -> bool:
        return all(View.of(live).owner.get(slot) == node.id for live in self._live())

    def kill_master(self, slot: int, *, rejoin: bool = True) -> ClusterNode:
        """SIGKILL ``slot``'s master; its replica takes over after ``cluster-node-timeout``
        (writes acknowledged by the master but not yet replicated are lost: Redis's own
        window). Returns the new owner once every live node agrees. With ``rejoin`` the killed
        node is started again (empty, same nodes.conf) and waited for as the new replica, so
        the cluster is whole again for the next test; without, it stays dead and its shard has
        no replica (``revive()`` brings it back)."""
        old = self.owner(slot)
        new = self.replica_of(old)
        old.kill()
        wait_until(lambda: new.role()[0] == "master", f"{new.address} promoted")
        if not rejoin:
            wait_until(lambda: self.owner(slot) is new, f"slot {slot} owned by {new.address}")
            wait_until(self._states_ok, "cluster_state:ok on every live node")
            return new
        old.start()
        return self._taken_over(slot, old, new)

    def migrate_slot(
        self, slot: int, to: ClusterNode | str | None = None, batch: int = 100
    ) -> ClusterNode:
        """Move ``slot`` to the master ``to`` (a node or its address; default: the next
        master) the way ``redis-cli --cluster reshard`` does, so it can run under load: the
        target IMPORTING, the source MIGRATING (clients get ASK for keys already moved, or not
        yet created), the keys MIGRATEd ``batch`` at a time, then SETSLOT NODE on the target,
        the source and the other masters. Returns the target once every node agrees."""
        source = self.owner(slot)
        target = self._target(source, to)
        if target is source:
            return target
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
        for keys in self._batches(source, slot, batch):
            source.call("MIGRATE", target.host, target.port, "", 0, 10_000, "KEYS", *keys)
        for node in [target, source, *(m for m in self.masters() if m not in (target, source))]:
            node.call("CLUSTER", "SETSLOT", slot, "NODE", target.id)
        wait_until(lambda: self.owner(slot) is target, f"slot {slot} owned by {target.address}")
        return target

    def revive(self) -> None:
        """Start again every node killed with ``kill_master(..., rejoin=False)`` and wait until
        the cluster is whole (each comes back as the replica of the master that replaced it)."""
        for node in self.nodes:
            if not node.alive:
                node.start()
        self._wait_healthy()

    def flushall(self) -> None:
        """FLUSHALL on every master (the replicas follow)."""
        for node in self.masters():
            node.call("FLUSHALL")

    # -- inside ------------------------------------------------------------------------------
    def _live(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.alive]

    def _target(self, source: ClusterNode, to: ClusterNode | str | None) -> ClusterNode:
        if isinstance(to, str):
            to = self.node(to)
        if to is None:
            masters = sorted(self.masters(), key=lambda n: n.port)
            to = masters[(masters.index(source) + 1) % len(masters)]
        if to.role()[0] != "master":
            raise ValueError(f"{to.address} is not a master: a slot can move only to a master")
        return to

    @staticmethod
    def _batches(source: ClusterNode, slot: int, batch: int) -> Iterator[list[str]]:
        while True:
            keys = source.call("CLUSTER", "GETKEYSINSLOT", slot, batch)
            assert isinstance(keys, list)
            if not keys:
                return
            yield keys

    def _taken_over(self, slot: int, old: ClusterNode, new: ClusterNode) -> ClusterNode:
        wait_until(lambda: self.owner(slot) is new, f"slot {slot} owned by {new.address}")
        wait_until(lambda: old.role() == ("slave", new.port), f"{old.address} replicating")
        self._wait_healthy()
        return new

    def _states_ok(self) -> bool:
        for node in self._live():
            info = node.call("CLUSTER", "INFO")
            assert isinstance(info, str)
            if "cluster_state:ok" not in info:
                return False
        return True

    def _wait_healthy(self) -> None:
        """Every node up and seen by every other as such (no ``fail`` / ``pfail`` /
        ``handshake`` flag), all slots served, every replica's link up."""

        def healthy() -> bool:
            if not self._states_ok():
                return False
            ids = {node.id for node in self.nodes}
            for node in self.nodes:
                view = View.of(node)
                if set(view.flags) != ids or len(view.owner) != SLOTS:
                    return False
                if any(f & {"fail", "fail?", "handshake", "noaddr"} for f in view.flags.values()):
                    return False
                if "slave" in view.flags[node.id] and node.role()[1] is None:
                    return False
            return True

        wait_until(healthy, "the cluster healthy (every node up, known, in sync)")


def _knows(node: ClusterNode, other: ClusterNode) -> bool:
    return other.id in View.of(node).flags


def _node_args(port: int, bus: int, appendonly: bool) -> list[str]:
    return [
        "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
        "--cluster-port", str(bus), "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        # a replica may always take over, however long it was cut off (tests kill on purpose)
        "--cluster-replica-validity-factor", "0",
        # the shape stays 3 + 3: no replica wanders to another master
        "--cluster-allow-replica-migration", "no",
        "--save", "", "--appendonly", "yes" if appendonly else "no",
        # a replica syncs at once (the default waits 5 s for others to join a diskless sync)
        "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        "--protected-mode", "no", "--dir", ".",
    ]  # fmt: skip
