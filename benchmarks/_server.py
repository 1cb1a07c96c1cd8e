"""A private ``redis-server`` for a benchmark run, and the server-side counters it reads.

A free loopback port, no persistence, killed at the end (``run.py`` and ``redis_memory.py`` use it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

__all__ = ["Counters", "counters", "free_port", "redis_server"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(*extra: str, port: int | None = None) -> Iterator[str]:
    """Start ``redis-server`` on a loopback port (``port``, else (None or 0) a free one; no RDB,
    no AOF;
    ``extra`` arguments after those); yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    port = port or free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += extra
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.01)
        else:
            raise SystemExit("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class Counters:
    """Server-side totals at one moment: read events (one per request burst from a client, so
    one per round trip for small requests), command calls by name, and ``used_memory`` bytes."""

    reads: int
    calls: dict[str, int]
    used_memory: int

    def minus(self, before: Counters, *, own_reads: int = 1) -> tuple[int, int, dict[str, int]]:
        """(round trips, commands, calls by name) since ``before``, leaving out ``INFO`` calls
        and ``own_reads`` read events (the measuring ``INFO`` itself)."""
        calls = {
            name: n - before.calls.get(name, 0)
            for name, n in self.calls.items()
            if n != before.calls.get(name, 0) and name != "info"
        }
        return self.reads - before.reads - own_reads, sum(calls.values()), calls


async def counters(client: Redis) -> Counters:
    """Read the ``Counters`` with one ``INFO`` call."""
    info = await client.info("all")
    calls = {
        key.removeprefix("cmdstat_"): int(value["calls"])
        for key, value in info.items()
        if key.startswith("cmdstat_")
    }
    return Counters(int(info["total_reads_processed"]), calls, int(info["used_memory"]))
