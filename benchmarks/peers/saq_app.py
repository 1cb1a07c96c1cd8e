"""SAQ's benchmark jobs and worker settings; run with ``saq benchmarks.peers.saq_app.settings``."""

from __future__ import annotations

import os
from typing import Any

from saq import Queue

from benchmarks import probe
from benchmarks.peers import bodies


async def noop(ctx: dict[str, Any]) -> None:
    probe.tally()


def noop_sync(ctx: dict[str, Any]) -> None:
    probe.tally()


async def stamp(ctx: dict[str, Any], *, sent: float) -> None:
    probe.stamp(sent)


async def ran(ctx: dict[str, Any]) -> None:
    bodies.ran()


def ran_sync(ctx: dict[str, Any]) -> None:
    bodies.ran()


async def io(ctx: dict[str, Any]) -> None:
    await bodies.io()


def io_sync(ctx: dict[str, Any]) -> None:
    bodies.io_sync()


def make_queue(url: str) -> Queue:
    return Queue.from_url(url)


settings = {
    "queue": make_queue(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")),
    "functions": [noop, noop_sync, stamp, ran, ran_sync, io, io_sync],
    "concurrency": 10,
}
