"""The web apps of ``benchmarks/web.py``: per system, a FastAPI app (``*_asgi``, ``api``) or a
Flask app (``*_wsgi``, ``web``) whose ``POST /jobs`` enqueues one job of the ``ran`` body
(``benchmarks.peers.bodies``) and then ``counted()``: one byte appended to ``BENCH_WEB_FILE``, so
the runner knows how many jobs the web tier enqueued, across every web process and thread."""

from __future__ import annotations

import os

__all__ = ["counted"]

_fd: dict[int, int] = {}  # pid -> descriptor (each web process opens its own after the fork)


def counted() -> None:
    """Count one enqueued job: one ``write`` of one byte on an ``O_APPEND`` descriptor."""
    pid = os.getpid()
    fd = _fd.get(pid)
    if fd is None:
        path = os.environ["BENCH_WEB_FILE"]
        fd = _fd[pid] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, b".")
