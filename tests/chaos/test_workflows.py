"""Catalogue row 32, chords under kills: chords of 10 members run by real worker processes on a
private Redis while workers are SIGKILLed at random. Every chord ends, no callback is missing,
none is doubled (each callback's side effect, recorded in Redis by the task with its job id and
attempt, appears once per attempt, and no run of it lacks a kill, reclaim or retry before it),
every callback is fed its members' results in order, and no job is lost.

The suite runs the short profile (100 chords of 10, about 20 s); the long one is the same test
with ``CHAOS_WORKFLOW_CHORDS=1000`` (``CHAOS_WORKFLOW_MEMBERS`` and ``CHAOS_WORKFLOW_STORMS``
change the size of a chord and the number of storms in a row).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.harness import cluster
from tests.chaos.workflows import run_chord_storm

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

CHORDS = int(os.environ.get("CHAOS_WORKFLOW_CHORDS", "100"))
MEMBERS = int(os.environ.get("CHAOS_WORKFLOW_MEMBERS", "10"))
STORMS = int(os.environ.get("CHAOS_WORKFLOW_STORMS", "1"))


@pytest.mark.slow
async def test_row32_every_chord_ends_through_a_kill_storm_with_each_callback_released_once(
    tmp_path: Path,
) -> None:
    for seed in range(STORMS):
        directory = tmp_path / f"storm{seed}"
        with cluster(directory, visibility_timeout=1.0, reaper_interval=0.3, max_retries=50) as c:
            figures = await run_chord_storm(
                c, chords=CHORDS, members=MEMBERS, workers=3, kill_every=0.7, seed=32 + seed,
                max_seconds=60.0 + CHORDS * MEMBERS / 20,
            )  # fmt: skip
        figures.assert_clean()
        assert figures.kills >= 1, figures.line()
        print(f"row 32: {figures.line()}")
