"""Huey's benchmark tasks on ``RedisHuey``; run with ``huey_consumer
benchmarks.peers.huey_app.huey -k thread -w 8 -q``."""

from __future__ import annotations

import os

from huey import RedisHuey

from benchmarks.peers._sync_jobs import JOBS

huey = RedisHuey("bench", url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
tasks = {name: huey.task(name=name)(fn) for name, fn in JOBS.items()}
