"""taskiq's benchmark tasks on taskiq-redis's ``RedisStreamBroker`` (the one its README shows
first, and the one with acknowledgements); run with ``taskiq worker
benchmarks.peers.taskiq_app:broker``."""

from __future__ import annotations

import os

from taskiq_redis import RedisStreamBroker

from benchmarks import probe


def make_broker(url: str) -> RedisStreamBroker:
    """A broker on ``url`` with the tasks noop, noop_sync and stamp registered."""
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

    return broker


#: The broker: ``BENCH_APP_URL`` when set (``benchmarks/redis_cpu.py``: the measured Redis, while
#: the probe reports to another), else the probe's ``BENCH_REDIS_URL``.
broker = make_broker(
    os.environ.get("BENCH_APP_URL") or os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
)
