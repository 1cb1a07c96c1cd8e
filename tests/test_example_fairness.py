"""examples/fairness.py runs, in memory and on the real Redis: behind a 200-job backlog of one
tenant, three small tenants wait for all of it on a plain queue and are done after 12 jobs (four
turns a round, three rounds) on a fair one."""

from __future__ import annotations

import pytest

from tests._examples import redis_prefix
from tests._examples import run_example as run

EXPECTED = [
    "plain queue: small tenants done after 209 of 209",
    "fair queue:  small tenants done after 12 of 209",
]


def run_example(env: dict[str, str]) -> list[str]:
    return run("fairness.py", env=env)


def test_fairness_example_in_memory() -> None:
    assert run_example({"TASKIT_BROKER_URL": "memory://"}) == EXPECTED


@pytest.mark.redis
def test_fairness_example_on_redis(redis_url: str) -> None:
    with redis_prefix(redis_url) as (prefix, _client):
        lines = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert lines == EXPECTED
