"""One redis-server process of a test topology: a loopback port, a directory of its own, its
arguments kept so it can be started again after a SIGKILL (same port, same ``nodes.conf``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

__all__ = ["Server", "free_ports", "redis_server_binary", "replicates", "wait_until"]

#: How long a topology may take to reach a state it waits for (start, failover, migration).
PATIENCE = 30.0
#: Between two looks at the servers: a cluster or Sentinel state has no event to wait on.
POLL = 0.02


def redis_server_binary() -> str | None:
    """The path of ``redis-server`` (Debian's runs sentinels too, with ``--sentinel``)."""
    return shutil.which("redis-server")


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports nobody listens on now (all bound at once, so the
    kernel cannot hand out one twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_until(check: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Call ``check`` until it returns true; AssertionError naming ``what`` after ``timeout``
    seconds. A ``redis.RedisError`` (a node still starting or just killed) counts as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(POLL)


class Server:
    """A redis-server (or sentinel) on ``127.0.0.1:port`` in ``directory``, killed by pid."""

    def __init__(self, binary: str, directory: Path, port: int, args: Sequence[str]) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._own: redis.Redis | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``: this one server, as a plain URL names it."""
        return f"redis://{self.address}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self) -> None:
        """Start the process without waiting for it to answer (see ``wait_up``)."""
        assert not self.alive, f"{self.address} is running already"
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.proc = subprocess.Popen(
                [self.binary, *self.args], cwd=self.directory, stdout=log, stderr=log
            )
        finally:
            log.close()

    def wait_up(self) -> None:
        """Wait until the server answers PING; AssertionError (with its log's tail) if it died."""

        def answers() -> bool:
            if not self.alive:
                tail = (self.directory / "server.log").read_text(errors="replace")[-800:]
                raise AssertionError(f"redis-server on {self.address} exited:\n{tail}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_until(answers, f"redis-server on {self.address} answering PING")

    def start(self) -> None:
        self.launch()
        self.wait_up()

    def kill(self) -> None:
        """SIGKILL the process (no shutdown save, no goodbye to the cluster) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        if self._own is not None:
            self._own.close()
            self._own = None

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A fresh redis-py client on this server (``str`` replies); the caller closes it."""
        return redis.Redis(
            host=self.host, port=self.port, decode_responses=True,
            socket_timeout=timeout, socket_connect_timeout=timeout,
        )  # fmt: skip

    def call(self, *args: str | int) -> object:
        """One command, on the topology's own client of this server (kept, not one connection
        a call: the waits poll every few ms and would fill the port range with TIME_WAITs)."""
        if self._own is None:
            self._own = self.client()
        return self._own.execute_command(*args)  # type: ignore[no-untyped-call]


def replicates(server: Server, master: Server) -> bool:
    """Whether ``server`` replicates ``master`` with the link up on both sides: connected on
    the replica's, online on the master's (a replica that just loaded its first sync is not
    sent the stream until its first ack: promoted then, it lacks the latest writes). No offset
    check: under load a replica is always a little behind, which a failover must not wait
    out (CLUSTER FAILOVER waits for it itself; Sentinel's does not, its window)."""
    info = master.call("INFO", "replication")
    assert isinstance(info, dict)
    online = any(
        isinstance(v, dict) and int(v["port"]) == server.port and v["state"] == "online"
        for k, v in info.items() if k.startswith("slave")
    )  # fmt: skip
    reply = server.call("ROLE")
    assert isinstance(reply, list)
    return (
        online and reply[0] == "slave" and int(reply[2]) == master.port and reply[3] == "connected"
    )
