"""Faults of the connection to Redis: catalogue rows 23 (Redis frozen), 24 (lost replies) and
30 (ten workers reclaiming the same expired leases); see ``connection.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.connection import BOUND, run_frozen, run_lost_replies, run_reclaim_race

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_row23_a_frozen_redis_bounds_producers_and_loses_nothing(tmp_path: Path) -> None:
    figures = await run_frozen(tmp_path, freeze=4.0, load=1.5)
    print(f"row 23: {figures.line()}")
    assert figures.clean(), figures.line()
    assert figures.report.acked > 50
    # A call is one script, maybe behind one server check: each bounded by BOUND.
    assert float(str(figures.notes["longest_call"])[:-1]) < 2 * BOUND + 1.0, figures.line()
    assert figures.notes["unknown"] or figures.notes["unreachable"], figures.line()


async def test_row24_lost_replies_lose_nothing_and_the_logs_tell_the_truth(
    tmp_path: Path,
) -> None:
    figures = await run_lost_replies(tmp_path, jobs=200, chance=0.05)
    print(f"row 24: {figures.line()}")
    assert figures.clean(), figures.line()
    assert figures.notes["cuts_worker_side"], figures.line()
    assert figures.notes["cuts_producer_side"], figures.line()
    assert figures.notes["untrue_rejections"] == 0, figures.line()


async def test_row30_ten_workers_reclaim_each_expired_lease_once(tmp_path: Path) -> None:
    figures = await run_reclaim_race(tmp_path, jobs=30, reclaimers=10)
    print(f"row 30: {figures.line()}")
    assert figures.clean(), figures.line()
    assert figures.notes["reclaims"] == 30, figures.line()
    assert figures.notes["taken_twice"] == 0, figures.line()
