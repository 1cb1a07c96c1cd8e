"""Every example runs, so none of them rots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_runs_and_prints_each_result() -> None:
    done = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["add", "completed", "attempts=1", "5"]
    assert "cat.png resized to 640px" in lines[1]
    assert lines[2].split()[:3] == ["charge", "completed", "attempts=3"]
    assert lines[3].split()[:3] == ["validate", "failed", "attempts=1"]
    assert lines[4].split() == ["add", "completed", "attempts=1", "42"]
    assert "completed=4, failed=1, retried=2" in lines[5]
