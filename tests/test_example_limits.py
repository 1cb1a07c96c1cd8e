"""examples/limits.py (per-customer concurrency, a global limit, a rate per API token) runs, on
the memory broker and on the real Redis, and every limit held."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from redis import Redis

ROOT = Path(__file__).resolve().parent.parent


def run_example(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "examples/limits.py", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def number(lines: list[str], start: str) -> float:
    [line] = [line for line in lines if line.startswith(start)]
    return float(line.removeprefix(start).split()[0].rstrip("s"))


def check(lines: list[str]) -> None:
    assert lines[0] == "an export job needs: payment-api, exports:acme"  # global ones first
    assert lines[1] == "an API call needs: api-token:tok_1234"
    assert 1 <= number(lines, "acme exports at once: ") <= 2
    assert 1 <= number(lines, "zeta exports at once: ") <= 2
    assert 2 <= number(lines, "payment API calls at once: ") <= 3  # acme and zeta overlap
    [calls] = [line for line in lines if line.startswith("API calls: ")]
    assert calls.startswith("API calls: 6 started over ")
    assert number(lines, "API calls: 6 started over ") >= 0.7  # 0.8 s, to the printed 0.1 s
    assert "exports running now: 0, waiting: 0" in lines
    assert "completed=14, failed=0, retried=0" in lines[-1]


def test_the_example_runs_on_the_memory_broker() -> None:
    check(run_example())


def test_the_example_runs_on_real_redis(redis_url: str) -> None:
    prefix = f"taskit-test-{uuid.uuid4().hex[:12]}"
    client = Redis.from_url(redis_url)
    try:
        check(run_example(f"{redis_url}?prefix={prefix}"))
    finally:
        doomed = list(client.scan_iter(match=f"{{{prefix}}}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
