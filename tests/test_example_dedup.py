"""examples/dedup.py runs, in memory and on the real Redis: a webhook burst makes one job per
repository with the last arguments, a throttled report runs once, a paused queue's job waits
until it is resumed."""

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
    "webhooks: 6 received, 2 jobs, 4 merged",
    "report again: duplicate=True same job=True status=completed",
    "emails paused: 1 waiting, sent []",
    "emails resumed: sent ['ada@example.com']",
    "synced: ['api@c5', 'web@w1']",
    "reports: ['acme']",
]


def run_example(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "examples/dedup.py"], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_dedup_example_in_memory() -> None:
    assert run_example({"TASKIT_BROKER_URL": "memory://"}) == EXPECTED


@pytest.mark.redis
def test_dedup_example_on_redis(redis_url: str) -> None:
    prefix = f"dedup-example-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    try:
        lines = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert lines == EXPECTED
        assert client.smembers("{" + prefix + "}:paused") == set()  # resumed: nothing left
    finally:
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
