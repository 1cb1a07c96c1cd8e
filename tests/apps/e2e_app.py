"""The App that end-to-end tests run in `taskit worker` subprocesses.

Its broker is ``TASKIT_BROKER_URL``. Handlers record what they did in a Redis list named by
``E2E_LEDGER`` (a plain key outside taskit's own), so the test process can see the order and
the attempts of every run. The list is on the Redis of ``E2E_LEDGER_URL`` (a plain
``redis://`` URL), by default the broker's (which must then be a plain one, without taskit's
``?prefix=`` or ``?shards=``).
"""

from __future__ import annotations

import os
import time

import anyio
import redis

from taskit import App

app = App()
_ledger = redis.Redis.from_url(
    os.environ.get("E2E_LEDGER_URL")
    or os.environ.get("TASKIT_BROKER_URL", "redis://127.0.0.1:6379/0")
)
LEDGER = os.environ.get("E2E_LEDGER", "e2e:ledger")
flaky_calls: dict[str, int] = {}


def _record(entry: str) -> None:
    _ledger.rpush(LEDGER, f"{entry}|{os.getpid()}|{time.time():.6f}")


@app.task(name="e2e.record")
def record(tag: str) -> str:
    _record(tag)
    return tag


@app.task(name="e2e.add")
async def add(a: int, b: int) -> int:
    return a + b


@app.task(name="e2e.flaky", max_retries=3, backoff=0.05)
def flaky(tag: str, failures: int) -> str:
    """Fails ``failures`` times (counted in Redis, across workers), then succeeds."""
    n = int(_ledger.incr(f"{LEDGER}:flaky:{tag}"))
    _record(f"flaky:{tag}:{n}")
    if n <= failures:
        raise RuntimeError(f"failure {n} of {failures}")
    return f"{tag} ok after {n}"


@app.task(name="e2e.sleep")
async def sleep(seconds: float) -> float:
    _record(f"sleep-start:{seconds}")
    await anyio.sleep(seconds)
    return seconds
