"""examples/progress.py runs, in memory and on the real Redis: the watcher reads the import's
progress mid-job, and both jobs end with their last report stored."""

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
    "while running: running 50% imported 500 of 1000",
    "import_rows completed 100% imported 1000 of 1000 {'row': 1000}",
    "resize      completed 100% resized 8 of 8 {}",
]


def run_example(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "examples/progress.py"], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_progress_example_in_memory() -> None:
    assert run_example({"TASKIT_BROKER_URL": "memory://"}) == EXPECTED


@pytest.mark.redis
def test_progress_example_on_redis(redis_url: str) -> None:
    prefix = f"progress-example-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    try:
        lines = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert lines == EXPECTED
    finally:
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
