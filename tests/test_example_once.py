"""examples/once.py runs, in memory and on the real Redis, and each side effect happens once."""

from __future__ import annotations

import pytest

from tests._examples import redis_prefix
from tests._examples import run_example as run

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
    return run("once.py", env=env)


def test_once_example_in_memory() -> None:
    lines = run_example({"TASKIT_BROKER_URL": "memory://"})
    assert lines[:-1] == EXPECTED
    assert "completed=4, failed=0, retried=1" in lines[-1]


@pytest.mark.redis
def test_once_example_on_redis(redis_url: str) -> None:
    with redis_prefix(redis_url) as (prefix, _client):
        lines = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert lines[:-1] == EXPECTED
        again = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert "charges: []" in again  # a rerun in a new process: the keys remember
