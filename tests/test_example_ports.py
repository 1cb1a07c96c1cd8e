"""examples/ports.py runs, on the memory broker and on the real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = [
    "JobService is a JobCreator: True",
    "schedules from JSON: nightly-cleanup",
    "ran: charged 99.99 for txn_789",
    "ran: sent 'Welcome' to ada@example.com",
    "ran: 0",
    "myapp_jobs_jobs_processed_total{task=email.send} 1.0",
]


def run(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKIT_")}
    done = subprocess.run(
        [sys.executable, "examples/ports.py"], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_ports_example_runs_in_memory() -> None:
    assert run() == EXPECTED


@pytest.mark.redis
def test_the_ports_example_runs_on_redis(redis_url: str) -> None:
    prefix = f"i13-ports-ex-{uuid.uuid4().hex[:8]}"
    try:
        assert run(TASKIT_BROKER_URL=redis_url, TASKIT_REDIS_PREFIX=prefix) == EXPECTED
    finally:
        client = redis.Redis.from_url(redis_url)
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
