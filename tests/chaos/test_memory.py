"""Row 22: Redis out of memory (``maxmemory``, ``noeviction``) under load, full at times."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.memory import run_memory

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_row22_maxmemory_noeviction_strands_nothing(tmp_path: Path) -> None:
    figures = await run_memory(tmp_path, jobs=500, cycles=2, full_seconds=5.0)
    print(f"row 22: {figures.line()}")
    figures.assert_clean()
    assert figures.refused > 0  # Redis was truly full while producers were enqueueing
    assert figures.log_lines <= 2 * figures.full_cycles, figures.line()  # not one per job
