"""examples/dedup.py runs, in memory and on the real Redis: a webhook burst makes one job per
repository with the last arguments, a throttled report runs once, a paused queue's job waits
until it is resumed."""

from __future__ import annotations

import pytest

from tests._examples import redis_prefix
from tests._examples import run_example as run

EXPECTED = [
    "webhooks: 6 received, 2 jobs, 4 merged",
    "report again: duplicate=True same job=True status=completed",
    "emails paused: 1 waiting, sent []",
    "emails resumed: sent ['ada@example.com']",
    "synced: ['api@c5', 'web@w1']",
    "reports: ['acme']",
]


def run_example(env: dict[str, str]) -> list[str]:
    return run("dedup.py", env=env)


def test_dedup_example_in_memory() -> None:
    assert run_example({"TASKIT_BROKER_URL": "memory://"}) == EXPECTED


@pytest.mark.redis
def test_dedup_example_on_redis(redis_url: str) -> None:
    with redis_prefix(redis_url) as (prefix, client):
        lines = run_example({"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix})
        assert lines == EXPECTED
        assert client.smembers("{" + prefix + "}:paused") == set()  # resumed: nothing left
