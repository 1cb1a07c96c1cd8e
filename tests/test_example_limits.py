"""examples/limits.py (per-customer concurrency, a global limit, a rate per API token) runs, on
the memory broker and on the real Redis, and every limit held."""

from __future__ import annotations

from tests._examples import redis_prefix
from tests._examples import run_example as run


def run_example(*args: str) -> list[str]:
    return run("limits.py", *args)


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
    with redis_prefix(redis_url) as (prefix, _client):
        check(run_example(f"{redis_url}?prefix={prefix}"))
