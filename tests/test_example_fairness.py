"""examples/fairness.py runs, in memory and on the real Redis: behind a 200-job backlog of one
tenant, three small tenants wait for all of it on a plain queue and are done after 12 jobs (four
turns a round, three rounds) on a fair one."""

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
    "plain queue: small tenants done after 209 of 209",
    "fair queue:  small tenants done after 12 of 209",
]


def run_example(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "examples/fairness.py"], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_fairness_example_in_memory() -> None:
    assert run_example({"TASKIT_BROKER_URL": "memory://"}) == EXPECTED


@pytest.mark.redis
def test_fairness_example_on_redis(redis_url: str) -> None:
    prefix = f"fairness-example-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    try:
        lines = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert lines == EXPECTED
    finally:
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
