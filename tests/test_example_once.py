"""examples/once.py runs, in memory and on the real Redis, and each side effect happens once."""

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
    "checkout  completed  attempts=2  already charged",
    "checkout  completed  attempts=1  already charged",
    "notify    completed  attempts=1  True",
    "notify    completed  attempts=1  False",
    "charges: ['A-17: 42.00']",
    "receipts: ['A-17']",
    "texts: ['+15550100: your order shipped']",
]


def run_example(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "examples/once.py"], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_once_example_in_memory() -> None:
    lines = run_example({"TASKIT_BROKER_URL": "memory://"})
    assert lines[:-1] == EXPECTED
    assert "completed=4, failed=0, retried=1" in lines[-1]


@pytest.mark.redis
def test_once_example_on_redis(redis_url: str) -> None:
    prefix = f"once-example-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    try:
        lines = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert lines[:-1] == EXPECTED
        again = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert "charges: []" in again  # a rerun in a new process: the keys remember
    finally:
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
