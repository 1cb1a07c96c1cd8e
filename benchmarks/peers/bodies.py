"""The two job bodies every system runs in ``benchmarks/peers_drain.py`` and ``benchmarks/web.py``.

* ``ran()``: the job only proves it ran: it appends one line (``time.monotonic()``) to the file
  named by ``BENCH_JOB_FILE``. One ``write`` on an ``O_APPEND`` descriptor, atomic for a short
  line, so it counts jobs run by any number of processes and threads (Celery's prefork children,
  RQ's forked work horses) exactly; the runner reads the count and the first and last end times
  from the file.
* ``io()`` / ``io_sync()``: one Redis call (``INCR`` of ``bench:io`` on ``BENCH_REDIS_URL``, the
  broker's own server, over a client the process keeps), then ``ran()``: a job that does a little
  real I/O, as most jobs do.

The descriptor and the clients are made on first use in each process (after any fork).
"""

from __future__ import annotations

import asyncio
import os
import time

import redis
import redis.asyncio

__all__ = ["IO_KEY", "io", "io_sync", "ran"]

IO_KEY = "bench:io"
_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_fd: dict[int, int] = {}  # pid -> descriptor (a forked child opens its own)
_sync: dict[int, redis.Redis] = {}
_async: dict[tuple[int, int], redis.asyncio.Redis] = {}  # (pid, id(loop)) -> client


def ran() -> None:
    """Append this job's end time to ``BENCH_JOB_FILE``."""
    pid = os.getpid()
    fd = _fd.get(pid)
    if fd is None:
        path = os.environ["BENCH_JOB_FILE"]
        fd = _fd[pid] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{time.monotonic():.6f}\n".encode())


def io_sync() -> None:
    """One blocking Redis call, then ``ran()``."""
    pid = os.getpid()
    client = _sync.get(pid)
    if client is None:
        client = _sync[pid] = redis.Redis.from_url(_URL)
    client.incr(IO_KEY)
    ran()


async def io() -> None:
    """One awaited Redis call (a client per process and event loop), then ``ran()``."""
    key = (os.getpid(), id(asyncio.get_running_loop()))
    client = _async.get(key)
    if client is None:
        client = _async[key] = redis.asyncio.Redis.from_url(_URL)
    await client.incr(IO_KEY)
    ran()
