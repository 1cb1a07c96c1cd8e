"""A Sentinel set on loopback ports: a master, its replica(s) and 3 sentinels watching them
under the name ``taskit`` (quorum 2, down after 1 s), and the failover a test provokes."""

from __future__ import annotations

import secrets
import tempfile
from functools import partial
from pathlib import Path
from types import TracebackType

from tests.topology.process import (
    Server,
    free_ports,
    redis_server_binary,
    replicates,
    wait_until,
)

__all__ = ["MASTER_NAME", "SentinelSet"]

MASTER_NAME = "taskit"
SENTINELS = 3
QUORUM = 2
#: ``down-after-milliseconds``: a master that does not answer this long is subjectively down.
DOWN_AFTER_MS = 1000
#: ``failover-timeout``: a stuck failover is retried after this long (ms).
FAILOVER_TIMEOUT_MS = 3000


class SentinelSet:
    """``replicas + 1`` redis-servers (no persistence) and 3 sentinels (``redis-server
    <conf> --sentinel``), killed by pid on ``stop()``.

    ``min_replicas_to_write=1`` sets ``min-replicas-to-write 1`` / ``min-replicas-max-lag 10``
    on every data node (a replica becomes the master): the master refuses writes no replica
    takes, so a failover loses no acknowledged write. With one replica that also means the new
    master refuses writes until the old one, demoted by the sentinels (about 8 s after the
    switch: Sentinel's own wait), replicates it; ``replicas=2`` avoids that gap.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        replicas: int = 1,
        min_replicas_to_write: int = 0,
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise AssertionError("redis-server is not installed (a Sentinel set needs it)")
        self.min_replicas_to_write = min_replicas_to_write
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, not {replicas}")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="taskit-sentinel-")
            directory = Path(self._tmp.name)
        self.directory = directory
        ports = free_ports(replicas + 1 + SENTINELS)
        data_ports, sentinel_ports = ports[: replicas + 1], ports[replicas + 1 :]
        self.data = [
            Server(binary, self.directory / f"data-{port}", port,
                   _data_args(port, data_ports[0] if index else None, min_replicas_to_write))
            for index, port in enumerate(data_ports)
        ]  # fmt: skip
        ids = [secrets.token_hex(20) for _ in sentinel_ports]
        self.sentinels: list[Server] = []
        for port, myid in zip(sentinel_ports, ids, strict=True):
            home = self.directory / f"sentinel-{port}"
            home.mkdir(parents=True)
            peers = [(p, i) for p, i in zip(sentinel_ports, ids, strict=True) if p != port]
            conf = _sentinel_conf(port, myid, data_ports, peers)
            (home / "sentinel.conf").write_text(conf)
            self.sentinels.append(Server(binary, home, port, ["sentinel.conf", "--sentinel"]))

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> SentinelSet:
        """Start the data nodes, wait until the replicas are in sync, start the sentinels and
        wait until each knows the master, every replica and the other two sentinels."""
        try:
            for server in self.data:
                server.launch()
            for server in self.data:
                server.wait_up()
            self._wait_replicated(self.data[0])
            for sentinel in self.sentinels:
                sentinel.launch()
            for sentinel in self.sentinels:
                sentinel.wait_up()
            self.wait_settled()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGKILL every server and sentinel; remove the directory (if it made it)."""
        for server in [*self.sentinels, *self.data]:
            server.kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- reading -----------------------------------------------------------------------------
    @property
    def sentinel_addresses(self) -> list[str]:
        """Every sentinel's ``127.0.0.1:<port>``."""
        return [sentinel.address for sentinel in self.sentinels]

    def url(self, prefix: str | None = None, scheme: str = "redis+sentinel") -> str:
        """``redis+sentinel://<every sentinel>/taskit`` with taskit's ``?prefix=`` if given."""
        query = f"?prefix={prefix}" if prefix is not None else ""
        return f"{scheme}://{','.join(self.sentinel_addresses)}/{MASTER_NAME}{query}"

    def reported(self, sentinel: Server) -> str:
        """The master's ``host:port`` as ``sentinel`` reports it."""
        reply = sentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        assert isinstance(reply, list | tuple), reply
        return f"{reply[0]}:{reply[1]}"

    def master(self) -> Server:
        """The data node every sentinel reports as the master (waits until they agree)."""
        agreed: list[Server] = []

        def agree() -> bool:
            addresses = {self.reported(sentinel) for sentinel in self.sentinels}
            agreed[:] = [s for s in self.data if {s.address} == addresses]
            return bool(agreed)

        wait_until(agree, "the sentinels agreeing on the master")
        return agreed[0]

    # -- moves -------------------------------------------------------------------------------
    def failover(self, *, demote: bool = False) -> Server:
        """SENTINEL FAILOVER, once a replica's link is up (if a failover just ran, that waits
        until Sentinel demoted the old master, ~10 s). Returns the new master once
        every sentinel reports it and it answers ROLE master.

        Sentinel's failover does not wait for the replica to catch up: a write the master
        acknowledged just before the switch can be lost (``min-replicas-to-write`` bounds
        the window, it does not close it). And Sentinel demotes the old master only ~8 s after
        the switch: until then it is a master still, taking writes that the resync will drop.
        ``demote=True`` makes it a replica at once (REPLICAOF), for tests about something else.
        """
        old = self.master()
        self._wait_replicated(old)

        def started() -> bool:
            # NOGOODSLAVE / INPROG (a ResponseError) while the sentinels' view catches up
            return self.sentinels[0].call("SENTINEL", "FAILOVER", MASTER_NAME) in (True, "OK")

        wait_until(started, "SENTINEL FAILOVER accepted")
        new = self._switched_from(old)
        if demote:
            old.call("REPLICAOF", new.host, new.port)
            self._wait_replicated(new)
        return new

    def kill_master(self, *, rejoin: bool = True) -> Server:
        """SIGKILL the master (once every replica acks it: after a ``failover()`` without
        ``demote``, that waits ~10 s for Sentinel to demote the old master); the sentinels find
        it down after ``down-after-milliseconds`` (1 s), agree (quorum 2) and promote the
        replica. Returns the new master once every sentinel reports it and it answers ROLE master.

        With ``rejoin`` the killed server is started again as the new master's replica, as an
        operator brings one back (started as it was, it would be an empty master until
        Sentinel demotes it, ~8 s later), and waited for in sync."""
        old = self.master()
        self._wait_replicated(old)
        old.kill()
        new = self._switched_from(old)
        if rejoin:
            old.args = _data_args(old.port, new.port, self.min_replicas_to_write)
            old.start()
            self._wait_replicated(new)
        return new

    def _switched_from(self, old: Server) -> Server:
        wait_until(lambda: self.master() is not old, "every sentinel reporting a new master")
        new = self.master()
        wait_until(lambda: _role(new) == "master", f"{new.address} answering ROLE master")
        return new

    def wait_settled(self) -> None:
        """Wait until every other data node replicates the master and every sentinel sees the
        master, the replicas (none down) and the two other sentinels."""
        master = self.master()
        self._wait_replicated(master)

        def sees_all(sentinel: Server) -> bool:
            info = _pairs(sentinel.call("SENTINEL", "MASTER", MASTER_NAME))
            if info["flags"] != "master" or int(info["num-other-sentinels"]) != SENTINELS - 1:
                return False
            replicas = sentinel.call("SENTINEL", "REPLICAS", MASTER_NAME)
            assert isinstance(replicas, list)
            up = {
                f"{r['ip']}:{r['port']}"
                for r in map(_pairs, replicas)
                if r["flags"] == "slave" and r["master-link-status"] == "ok"
            }
            return up == {s.address for s in self.data if s is not master}

        for sentinel in self.sentinels:
            wait_until(partial(sees_all, sentinel), f"sentinel {sentinel.address} settled")

    def _wait_replicated(self, master: Server) -> None:
        """Every other data node linked to ``master`` and acknowledging its stream: a replica
        fresh from its first sync gets the stream only after its first ack (up to 1 s later),
        and a forced SENTINEL FAILOVER before then would drop the writes made in between."""
        others = [server for server in self.data if server is not master]
        for server in others:
            wait_until(
                partial(replicates, server, master),
                f"{server.address} replicating {master.address}",
            )
        wait_until(
            partial(_acknowledged, master, len(others)), f"{master.address}'s replicas acking"
        )


def _acknowledged(master: Server, replicas: int) -> bool:
    """Whether ``replicas`` replicas acknowledge a PUBLISH made on ``master`` now (WAIT counts
    the acks of the connection's last replicated command; PUBLISH is one, touching no key)."""
    with master.client() as client:
        pipe = client.pipeline(transaction=False)
        pipe.publish("__topology__", "ack?")
        pipe.execute_command("WAIT", replicas, 100)
        acked = pipe.execute()[1]
    return int(acked) >= replicas


def _role(server: Server) -> str:
    reply = server.call("ROLE")
    assert isinstance(reply, list)
    return str(reply[0])


def _pairs(reply: object) -> dict[str, str]:
    """A sentinel's flat ``[name, value, ...]`` reply (or redis-py's dict of it) as a dict."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    assert isinstance(reply, list)
    return {str(k): str(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


def _data_args(port: int, master: int | None, min_replicas_to_write: int) -> list[str]:
    args = [
        "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no", "--dir", ".",
        "--save", "", "--appendonly", "no",
        "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        "--min-replicas-to-write", str(min_replicas_to_write), "--min-replicas-max-lag", "10",
    ]  # fmt: skip
    if master is not None:
        args += ["--replicaof", "127.0.0.1", str(master)]
    return args


def _sentinel_conf(
    port: int, myid: str, data_ports: list[int], peers: list[tuple[int, str]]
) -> str:
    """A sentinel's config file (Sentinel rewrites it, so each has its own). The other
    sentinels and the replicas are declared up front, as Sentinel itself writes them: the set
    is ready without the 2 s of hello messages it would take to discover them."""
    lines = [
        f"port {port}", "bind 127.0.0.1", "protected-mode no", "dir .", f"sentinel myid {myid}",
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {data_ports[0]} {QUORUM}",
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {MASTER_NAME} 1",
        *(f"sentinel known-replica {MASTER_NAME} 127.0.0.1 {p}" for p in data_ports[1:]),
        *(f"sentinel known-sentinel {MASTER_NAME} 127.0.0.1 {p} {i}" for p, i in peers),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"
