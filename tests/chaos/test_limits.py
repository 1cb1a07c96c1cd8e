"""Catalogue row 27, limits under kills: per-key concurrency limits through a kill storm of real
worker processes on a private Redis. Never more than N runs of a key at once, no attempt spent
on a miss, no job lost, and every slot and line back to empty after the storm, every time.

The suite runs the short profile (one storm of 120 jobs); the long one is the same test with
``CHAOS_LIMITS_STORMS=5 CHAOS_LIMITS_JOBS=1500``: several storms in a row, more jobs, more kills.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.harness import cluster
from tests.chaos.limits import run_limit_storm

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PER_KEY = 2


async def storm(directory: Path, *, jobs: int, kill_every: float, seed: int) -> None:
    with cluster(directory, visibility_timeout=1.0, reaper_interval=0.3, max_retries=50) as chaos:
        figures = await run_limit_storm(
            chaos, jobs=jobs, keys=4, per_key=PER_KEY, workers=3, kill_every=kill_every,
            seed=seed, max_seconds=30.0 + jobs / 10,
        )  # fmt: skip
    assert figures.report.lost == [], figures.line()
    assert figures.report.unjustified == [], figures.line()
    assert figures.kills >= 1, figures.line()
    assert max(figures.most_at_once.values()) <= PER_KEY, figures.most_at_once
    assert figures.attempt_gaps == [], figures.attempt_gaps
    assert figures.leftovers == {}, figures.leftovers  # every slot and line freed
    print(f"row 27: {figures.line()}")


STORMS = int(os.environ.get("CHAOS_LIMITS_STORMS", "1"))
JOBS = int(os.environ.get("CHAOS_LIMITS_JOBS", "120"))


@pytest.mark.slow
async def test_row27_limits_hold_through_a_kill_storm_and_every_slot_comes_back(
    tmp_path: Path,
) -> None:
    for seed in range(STORMS):
        kill_every = 0.6 if JOBS <= 200 else 0.5
        await storm(tmp_path / f"storm{seed}", jobs=JOBS, kill_every=kill_every, seed=27 + seed)
