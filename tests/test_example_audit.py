"""examples/audit.py runs, in memory and on the real Redis: each group sees every event, and an
event left unacknowledged comes again to another consumer."""

from __future__ import annotations

import pytest

from tests._examples import redis_prefix
from tests._examples import run_example as run

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
    return run("audit.py", env=env)


def test_audit_example_in_memory() -> None:
    assert run_example({"TASKIT_BROKER_URL": "memory://"}) == EXPECTED


@pytest.mark.redis
def test_audit_example_on_redis(redis_url: str) -> None:
    with redis_prefix(redis_url) as (prefix, client):
        env = {"TASKIT_BROKER_URL": redis_url, "TASKIT_REDIS_PREFIX": prefix}
        assert run_example(env) == EXPECTED
        assert client.exists("{" + prefix + "}:stream:audit")
