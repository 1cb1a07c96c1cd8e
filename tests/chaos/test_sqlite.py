"""The SQLite broker under chaos, fast profiles (catalogue rows 33-35; ``tests/chaos/sqlite.py``
has the scenarios, ``python -m tests.chaos.sqlite`` the long run). No Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.sqlite import run_kill_storm, run_producers, run_write_kills


@pytest.mark.anyio
async def test_row33_kill_9_workers_under_load_loses_nothing(tmp_path: Path) -> None:
    result = await run_kill_storm(tmp_path, jobs=400, workers=3, kill_every=0.7, max_seconds=90)
    print(f"row 33: {result.line()}")
    assert result.kills >= 2  # the load outlived some kills
    assert result.lost == 0
    assert result.unjustified == 0  # every rerun followed its runner's death


@pytest.mark.anyio
@pytest.mark.parametrize("task", ["chaos.work", "chaos.work_sync"], ids=["async-def", "def"])
async def test_row33_at_concurrency_1_each_settle_taking_the_next_loses_nothing(
    tmp_path: Path, task: str
) -> None:
    """Workers of concurrency 1 settle each job and lease their next in one transaction
    (``settle_and_reserve``; for ``def`` jobs, in the handler thread's chain): a kill -9
    between the two halves' commit and the run loses nothing, and reruns only what a killed
    worker held."""
    result = await run_kill_storm(
        tmp_path, jobs=120, workers=3, kill_every=0.7, max_seconds=90, concurrency=1, task=task
    )
    print(f"row 33, concurrency 1, {task}: {result.line()}")
    assert result.kills >= 2
    assert result.lost == 0
    assert result.unjustified == 0


def test_row34_kill_9_during_writes_leaves_the_file_consistent(tmp_path: Path) -> None:
    result = run_write_kills(tmp_path, kills=12)
    print(f"row 34: {result.line()}")
    assert result.problems == []  # integrity_check ok, counts agree, after every kill
    assert result.acked > 0
    assert result.torn == 0  # every batch whole or absent
    assert result.lost == 0  # every acknowledged batch stored and run


def test_row35_two_hundred_concurrent_producers_store_each_job_once(tmp_path: Path) -> None:
    result = run_producers(tmp_path, processes=4, threads=50, jobs=3)
    print(f"row 35: {result.line()}")
    assert result.producers == 200
    assert result.failed == 0
    assert (result.missing, result.doubled) == (0, 0)
    assert result.stored == result.jobs  # the shared ids once each, nothing else
    assert result.problems == []
