"""arq's benchmark jobs and worker settings; run with ``python -m benchmarks.peers.arq_app``
(arq's documented ``run_worker(WorkerSettings)``; logging left unconfigured, as with a library)."""

from __future__ import annotations

import os
from typing import Any

from arq import run_worker
from arq.connections import RedisSettings

from benchmarks import probe
from benchmarks.peers import bodies


async def noop(ctx: dict[str, Any]) -> None:
    probe.tally()


async def stamp(ctx: dict[str, Any], sent: float) -> None:
    probe.stamp(sent)


async def ran(ctx: dict[str, Any]) -> None:
    bodies.ran()


async def io(ctx: dict[str, Any]) -> None:
    await bodies.io()


class WorkerSettings:
    """arq's defaults (max_jobs 10) except ``poll_delay``: 0.5 s by default, which caps a worker
    at a few hundred jobs a second; the issue asks for it tuned down (``BENCH_ARQ_POLL_DELAY``)."""

    functions = [noop, stamp, ran, io]
    redis_settings = RedisSettings.from_dsn(
        os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    poll_delay = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.01"))


if __name__ == "__main__":
    run_worker(WorkerSettings)  # type: ignore[arg-type]
