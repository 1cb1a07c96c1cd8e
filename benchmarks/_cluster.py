"""A Redis Cluster of 1 to N masters and no replicas for a benchmark, and each master's counters.

The nodes are Debian's ``redis-server`` on free loopback ports, no persistence, each master
given an equal slot range ``[k*16384//n, (k+1)*16384//n)`` (what ``redis-cli --cluster create``
does, and what ``taskit.broker.redis.shards`` chooses its shards' hash tags for). Built from the
test topology's parts (``tests.topology``: a node process, killed by pid); the tests' own
``RedisCluster`` is fixed at 3 masters and 3 replicas, which is not what a scaling run needs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.topology.cluster import SLOTS, ClusterNode
from tests.topology.process import free_ports, redis_server_binary, wait_until

__all__ = ["BenchCluster", "NodeCounters", "node_counters"]


@dataclass(frozen=True)
class NodeCounters:
    """One master's totals at one moment: CPU seconds (``used_cpu_user + used_cpu_sys``, every
    thread of the process) and the system part of it (``used_cpu_sys``: the kernel's work on
    the process's behalf, its syscalls and the loopback TCP they drive), command calls by name
    (a script's commands counted too), read events (``total_reads_processed``: one per request
    or pipeline a client sends, so one per round trip; the ``INFO`` that reads these counters
    is one of them), write events (``total_writes_processed``: reply writes), bytes read
    (``total_net_input_bytes``), and the process's voluntary and involuntary context switches
    (from ``/proc/<pid>/status``: a voluntary one is a sleep in ``epoll_wait`` with nothing to
    do, so each later wake-up costs CPU that no command asked for; an involuntary one is the
    scheduler taking the core away mid-work)."""

    cpu: float
    calls: dict[str, int]
    reads: int
    sleeps: int
    sys: float = 0.0
    writes: int = 0
    net_in: int = 0
    preempted: int = 0

    def calls_since(self, before: NodeCounters) -> dict[str, int]:
        """Calls by name since ``before``, leaving out ``INFO`` (the measuring itself)."""
        return {
            name: n - before.calls.get(name, 0)
            for name, n in self.calls.items()
            if n != before.calls.get(name, 0) and name != "info"
        }


def node_counters(node: ClusterNode) -> NodeCounters:
    """Read ``node``'s ``NodeCounters`` with one ``INFO all``."""
    info = node.call("INFO", "all")
    assert isinstance(info, dict)
    stats = {
        key.removeprefix("cmdstat_"): value for key, value in info.items()
        if key.startswith("cmdstat_")
    }  # fmt: skip
    sys = float(info["used_cpu_sys"])
    switches = _switches(node)
    return NodeCounters(
        cpu=float(info["used_cpu_user"]) + sys,
        calls={name: int(value["calls"]) for name, value in stats.items()},
        reads=int(info["total_reads_processed"]),
        sleeps=switches["voluntary_ctxt_switches"],
        sys=sys,
        writes=int(info["total_writes_processed"]),
        net_in=int(info["total_net_input_bytes"]),
        preempted=switches["nonvoluntary_ctxt_switches"],
    )


def _switches(node: ClusterNode) -> dict[str, int]:
    """The node's voluntary and involuntary context switches so far."""
    found = {}
    with open(f"/proc/{node.pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                found[name] = int(value)
    if len(found) != 2:
        raise RuntimeError(f"no context switch counts in /proc/{node.pid}/status")
    return found


class BenchCluster:
    """``masters`` cluster nodes, every slot served, no replicas; ``with BenchCluster(3) as c``.

    ``stop()`` (also on any error in ``start()``) kills every node by pid and removes the
    directory.
    """

    def __init__(self, masters: int) -> None:
        if not 1 <= masters <= 16:
            raise ValueError(f"masters must be 1..16, not {masters}")
        binary = redis_server_binary()
        if binary is None:
            raise SystemExit("redis-server is not on PATH (Debian: apt-get install redis-server)")
        self._tmp = tempfile.TemporaryDirectory(prefix=f"taskit-bench-cluster{masters}-")
        ports = free_ports(2 * masters)
        self.nodes = [
            ClusterNode(binary, Path(self._tmp.name) / str(port), port, bus, _args(port, bus))
            for port, bus in zip(ports[:masters], ports[masters:], strict=True)
        ]

    def start(self) -> BenchCluster:
        """Start, join and give each node its slot range; returns once every node says
        ``cluster_state:ok`` (about 1 s after the slots are given)."""
        try:
            for node in self.nodes:
                node.launch()
            for epoch, node in enumerate(self.nodes, start=1):
                node.wait_up()
                node.id = str(node.call("CLUSTER", "MYID"))
                node.call("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            for node in self.nodes[1:]:
                self.nodes[0].call("CLUSTER", "MEET", node.host, node.port, node.bus)
            count = len(self.nodes)
            for k, node in enumerate(self.nodes):
                node.call(
                    "CLUSTER", "ADDSLOTSRANGE", k * SLOTS // count, (k + 1) * SLOTS // count - 1
                )
            wait_until(self._ok, f"a {count}-master cluster saying cluster_state:ok")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        self._tmp.cleanup()

    def __enter__(self) -> BenchCluster:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def url(self, prefix: str, shards: int) -> str:
        """``redis+cluster://<every node>?prefix=...`` and ``&shards=N`` when N > 1."""
        seeds = ",".join(node.address for node in self.nodes)
        return f"redis+cluster://{seeds}?prefix={prefix}" + (
            f"&shards={shards}" if shards > 1 else ""
        )

    def flushall(self) -> None:
        for node in self.nodes:
            node.call("FLUSHALL")

    def counters(self) -> list[NodeCounters]:
        """Every master's counters, in node order."""
        return [node_counters(node) for node in self.nodes]

    def _ok(self) -> bool:
        for node in self.nodes:
            info = node.call("CLUSTER", "INFO")
            assert isinstance(info, str)
            if (
                "cluster_state:ok" not in info
                or f"cluster_known_nodes:{len(self.nodes)}" not in info
            ):
                return False
        return True


def _args(port: int, bus: int) -> list[str]:
    return [
        "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
        "--cluster-port", str(bus), "--cluster-config-file", "nodes.conf",
        "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", ".",
    ]  # fmt: skip
