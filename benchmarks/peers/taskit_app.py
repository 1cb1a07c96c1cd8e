"""taskit's benchmark jobs; the worker runs ``taskit worker benchmarks.peers.taskit_app:app``."""

from __future__ import annotations

import os

from benchmarks import probe
from benchmarks.peers import bodies
from taskit import App


def make_app(url: str) -> App:
    """An App on ``url`` with the benchmark tasks: noop, stamp and the bodies of
    ``benchmarks.peers.bodies`` (ran, io), each also as a ``def`` (``*_sync``)."""
    app = App(url)

    @app.task(name="noop")
    async def noop() -> None:
        probe.tally()

    @app.task(name="noop_sync")
    def noop_sync() -> None:
        probe.tally()

    @app.task(name="stamp")
    async def stamp(sent: float) -> None:
        probe.stamp(sent)

    @app.task(name="ran")
    async def ran() -> None:
        bodies.ran()

    @app.task(name="ran_sync")
    def ran_sync() -> None:
        bodies.ran()

    @app.task(name="io")
    async def io() -> None:
        await bodies.io()

    @app.task(name="io_sync")
    def io_sync() -> None:
        bodies.io_sync()

    return app


#: The App's broker: ``BENCH_APP_URL`` when set (``benchmarks/shards.py``: a Redis Cluster, while
#: the probe reports to a plain Redis), else the probe's ``BENCH_REDIS_URL``.
app = make_app(
    os.environ.get("BENCH_APP_URL") or os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
)
