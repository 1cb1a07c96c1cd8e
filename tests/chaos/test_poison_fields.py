"""Poison fields under load (issue 11, item 1): random job records corrupted in Redis while
several workers run. Nothing lost, nothing run twice without cause, nothing stuck, every poisoned
job a dead letter with a reason, every worker alive. Short mode here; long mode in
``python -m tests.chaos``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.poison import run_poison

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_row20_poison_fields_under_load_lose_and_stick_nothing(tmp_path: Path) -> None:
    figures = await run_poison(
        tmp_path, jobs=300, workers=3, corrupt_every=0.01, seed=11, max_seconds=60.0
    )
    print(f"row 20: {figures.line()} parts={figures.parts}")
    figures.report.assert_clean()
    assert figures.poisoned, "the run corrupted nothing: the scenario proved nothing"
    assert figures.stuck == 0
    assert figures.dead_with_reason == len(figures.poisoned)
    assert figures.workers_alive == figures.workers
    assert figures.tracebacks == 0
