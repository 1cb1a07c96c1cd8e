"""examples/progress.py runs, in memory and on the real Redis: the watcher reads the import's
progress mid-job, and both jobs end with their last report stored."""

from __future__ import annotations

import pytest

from tests._examples import redis_prefix
from tests._examples import run_example as run

EXPECTED = [
    "while running: running 50% imported 500 of 1000",
    "import_rows completed 100% imported 1000 of 1000 {'row': 1000}",
    "resize      completed 100% resized 8 of 8 {}",
]


def run_example(env: dict[str, str]) -> list[str]:
    return run("progress.py", env=env)


def test_progress_example_in_memory() -> None:
    assert run_example({"TASKIT_BROKER_URL": "memory://"}) == EXPECTED


@pytest.mark.redis
def test_progress_example_on_redis(redis_url: str) -> None:
    with redis_prefix(redis_url) as (prefix, _client):
        lines = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert lines == EXPECTED
