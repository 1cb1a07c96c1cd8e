"""examples/workflows.py runs, in memory and on the real Redis, and every workflow ends as the
example says: results in order, the failed node named, the continued chord fed its failures."""

from __future__ import annotations

import pytest

from tests._examples import redis_prefix
from tests._examples import run_example as run

EXPECTED = [
    "pipeline: sizes: 13 bytes",
    "summary:  3 pages, 37 bytes",
    "broken:   fetch failed: LookupError: no page /gone",
    "          fetch failed -> parse failed",
    "tallied:  2 fetched, 1 failed",
    "waiting:  report after the fetch",
]


def test_workflows_example_in_memory() -> None:
    lines = run("workflows.py", env={"TASKIT_BROKER_URL": "memory://"})
    assert lines[:-1] == EXPECTED
    assert "completed=12, failed=2, retried=0, dead_lettered=0" in lines[-1]


@pytest.mark.redis
def test_workflows_example_on_redis(redis_url: str) -> None:
    with redis_prefix(redis_url) as (prefix, _client):
        env = {"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix}
        lines = run("workflows.py", env=env)
        assert lines[:-1] == EXPECTED
