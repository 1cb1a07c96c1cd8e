"""The App that the stop tests and ``benchmarks/stop_time.py`` run in `taskit worker` subprocesses.

Broker: ``TASKIT_BROKER_URL`` (default ``memory://``; the other ``TASKIT_*`` settings apply too).
``STOP_SEED=<seconds>`` enqueues one ``stop.sleep`` job of that many seconds when the module is
imported: the way a ``memory://`` worker, which no other process can reach, gets a job to run.
``STOP_SEED_SYNC=<seconds>`` does the same with ``stop.block``, a sync handler (a thread).
The worker's own log lines say when a job started and how it was settled.
"""

from __future__ import annotations

import logging
import os
import time

import anyio

from taskit import App

app = App()


@app.task(name="stop.sleep")
async def sleep(seconds: float) -> float:
    """Sleep ``seconds`` (cooperatively: a stop cancels it at once)."""
    await anyio.sleep(seconds)
    return seconds


@app.task(name="stop.block")
def block(seconds: float) -> float:
    """Sleep ``seconds`` in a worker thread: nothing can stop it sooner."""
    logging.getLogger(__name__).info("stop.block sleeping in its thread")
    time.sleep(seconds)
    return seconds


if os.environ.get("STOP_SEED_SYNC"):
    block.options(job_id="seeded-sync").enqueue_sync(float(os.environ["STOP_SEED_SYNC"]))
if os.environ.get("STOP_SEED"):
    sleep.options(job_id="seeded").enqueue_sync(float(os.environ["STOP_SEED"]))
