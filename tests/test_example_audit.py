"""examples/audit.py runs, in memory and on the real Redis: each group sees every event, and an
event left unacknowledged comes again to another consumer."""

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
    "dashboard  resize  created",
    "dashboard  charge  created",
    "dashboard  resize  started",
    "dashboard  resize  completed",
    "dashboard  charge  started",
    "dashboard  charge  failed     card declined for A-17",
    "pager p1   got failed, and dies before it acknowledges",
    "pager p2   got failed again: card declined for A-17",
]


def run_example(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "examples/audit.py"], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_audit_example_in_memory() -> None:
    assert run_example({"TASKIT_BROKER_URL": "memory://"}) == EXPECTED


@pytest.mark.redis
def test_audit_example_on_redis(redis_url: str) -> None:
    prefix = f"audit-example-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    try:
        env = {"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix}
        assert run_example(env) == EXPECTED
        assert client.exists("{" + prefix + "}:stream:audit")
    finally:
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
