"""examples/process_one.py (process_one with a handler of the script's own, result_ttl per job)
runs, on the memory broker and on the real Redis, and shows what it says."""

from __future__ import annotations

import pytest

from tests._examples import redis_prefix
from tests._examples import run_example as run

EXPECTED = [
    "ran: built the report for 2026-11",
    "ran: sent to ada@example.com",
    "ran: pong",
    "ran: LookupError: this script cannot run 'legacy.job'",  # retried once,
    "ran: LookupError: this script cannot run 'legacy.job'",  # then dead-lettered
    "report.build: completed (result_ttl: 604800 s)",
    "email.send: completed (result_ttl: the broker's)",
    "ping: gone (result_ttl: 0 s)",
    "legacy.job: dead_letter (result_ttl: the broker's)",
]


def run_example(*args: str) -> list[str]:
    return run("process_one.py", *args)


def test_the_example_runs_on_the_memory_broker() -> None:
    assert run_example() == EXPECTED


@pytest.mark.redis
def test_the_example_runs_on_real_redis(redis_url: str) -> None:
    with redis_prefix(redis_url) as (prefix, client):
        assert run_example(f"{redis_url}?prefix={prefix}") == EXPECTED
        done_keys = list(client.scan_iter(match=f"{{{prefix}}}:done:*"))
        ttls = sorted(client.ttl(key) for key in done_keys)  # the ping left no record
        assert len(ttls) == 2
        assert 500 < ttls[0] <= 600  # the email: the broker's ten minutes (DEFAULT_RESULT_TTL)
        assert 604_000 < ttls[1] <= 604_800  # the report: its own week
