"""taskiq's benchmark tasks on taskiq-redis's ``RedisStreamBroker`` (the one its README shows
first, and the one with acknowledgements); run with ``taskiq worker
benchmarks.peers.taskiq_app:broker``."""

from __future__ import annotations

import os

from taskiq_redis import RedisStreamBroker

from benchmarks import probe
from benchmarks.peers import bodies


def make_broker(url: str) -> RedisStreamBroker:
    """A broker on ``url`` with the tasks noop, stamp, ran, io (and ``*_sync`` variants)."""
    broker = RedisStreamBroker(url=url)

    @broker.task(task_name="noop")
    async def noop() -> None:
        probe.tally()

    @broker.task(task_name="noop_sync")
    def noop_sync() -> None:
        probe.tally()

    @broker.task(task_name="stamp")
    async def stamp(sent: float) -> None:
        probe.stamp(sent)

    @broker.task(task_name="ran")
    async def ran() -> None:
        bodies.ran()

    @broker.task(task_name="ran_sync")
    def ran_sync() -> None:
        bodies.ran()

    @broker.task(task_name="io")
    async def io() -> None:
        await bodies.io()

    @broker.task(task_name="io_sync")
    def io_sync() -> None:
        bodies.io_sync()

    return broker


#: The broker: ``BENCH_APP_URL`` when set (``benchmarks/redis_cpu.py``: the measured Redis, while
#: the probe reports to another), else the probe's ``BENCH_REDIS_URL``.
broker = make_broker(
    os.environ.get("BENCH_APP_URL") or os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
)
