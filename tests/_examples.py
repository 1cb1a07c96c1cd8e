"""What the example tests share: running an example script as a user would, and a fresh Redis
key prefix whose keys are deleted after the test."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import redis

__all__ = ["ROOT", "redis_prefix", "run_example"]

ROOT = Path(__file__).resolve().parent.parent


def run_example(
    script: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> list[str]:
    """Run ``examples/<script>`` with ``args`` (and ``env`` over this environment) from the
    repository root; it must exit 0 (else its stderr is the failure). Its stdout lines."""
    done = subprocess.run(
        [sys.executable, f"examples/{script}", *args], cwd=ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@contextmanager
def redis_prefix(redis_url: str) -> Iterator[tuple[str, redis.Redis]]:
    """A fresh key prefix and a client of ``redis_url``; every key of the prefix is deleted
    afterwards, whatever the test did."""
    prefix = f"taskit-example-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_url)
    try:
        yield prefix, client
    finally:
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
