"""Celery's benchmark tasks on its Redis transport; run with ``celery -A
benchmarks.peers.celery_app worker --loglevel WARNING`` (prefork pool, its default, with its
default concurrency: one child per core). No result backend, so no result is stored."""

from __future__ import annotations

import os

from celery import Celery

from benchmarks.peers._sync_jobs import JOBS

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
tasks = {name: app.task(name=name)(fn) for name, fn in JOBS.items()}
