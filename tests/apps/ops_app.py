"""The App that the operations tests (admin CLI, scheduler and worker subprocesses) load.

Its broker is a ``RedisBroker`` on ``TASKIT_BROKER_URL`` under the key prefix ``OPS_PREFIX``, so
each test works in a namespace of its own. ``ops.tick`` runs every ``OPS_EVERY`` seconds.
"""

from __future__ import annotations

import os
from datetime import datetime

from taskit import App
from taskit.broker.redis import RedisBroker

app = App(
    RedisBroker(
        os.environ.get("TASKIT_BROKER_URL", "redis://127.0.0.1:6379/0"),
        prefix=os.environ.get("OPS_PREFIX", "taskit-ops"),
    )
)


@app.periodic(every=float(os.environ.get("OPS_EVERY", "60")))
@app.task(name="ops.tick")
def tick() -> None:
    """Does nothing; the tests count how often it was enqueued."""


@app.task(name="ops.add")
async def add(a: int, b: int) -> int:
    return a + b


@app.task(name="ops.span")
def span(pair: tuple[int, int], at: datetime) -> str:
    """Says the types it received (the CLI converts JSON to them)."""
    return f"{type(pair).__name__} {type(at).__name__}"


@app.task(name="ops.size")
def size(data: bytes) -> int:
    return len(data)


@app.task(name="ops.boom", max_retries=0)
def boom() -> None:
    raise RuntimeError("boom")
