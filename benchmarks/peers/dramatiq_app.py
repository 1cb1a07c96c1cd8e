"""Dramatiq's benchmark actors on its Redis broker; run with ``dramatiq
benchmarks.peers.dramatiq_app --processes 1 --threads 8``."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.peers._sync_jobs import JOBS

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)
actors = {name: dramatiq.actor(actor_name=name)(fn) for name, fn in JOBS.items()}
