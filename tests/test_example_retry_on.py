"""examples/retry_on.py (retry_on, dont_retry_on, expires) runs, on the memory broker and on the
real Redis, and shows what it says."""

from __future__ import annotations

from tests._examples import redis_prefix
from tests._examples import run_example as run


def run_example(*args: str) -> list[str]:
    return run("retry_on.py", *args)


def check(lines: list[str]) -> None:
    alerts = {line for line in lines if line.startswith("alert: ")}
    assert alerts == {
        "alert: A-1 attempt 1: ConnectionResetError",
        "alert: A-1 attempt 2: ConnectionResetError",
        "alert: A-2 attempt 1: StolenCard",
        "alert: A-3 attempt 1: KeyError",
    }
    rows = [line.split(maxsplit=3) for line in lines if line.startswith("A-")]
    assert rows == [
        ["A-1", "completed", "attempts=3", "A-1 charged on attempt 3"],
        ["A-2", "failed", "attempts=1", "StolenCard: card reported stolen"],
        ["A-3", "failed", "attempts=1", "KeyError: 'currency'"],
        ["A-4", "completed", "attempts=2", "A-4 charged on attempt 2"],
        ["A-5", "cancelled", "attempts=1", rows[-1][3]],
    ]
    assert rows[-1][3].startswith("Expired: job expired at ")
    assert "dead letters: 0" in lines
    assert "completed=2, failed=2, retried=3, dead_lettered=0, cancelled=1" in lines[-1]


def test_the_example_runs_on_the_memory_broker() -> None:
    check(run_example())


def test_the_example_runs_on_real_redis(redis_url: str) -> None:
    with redis_prefix(redis_url) as (prefix, _client):
        check(run_example(f"{redis_url}?prefix={prefix}"))
