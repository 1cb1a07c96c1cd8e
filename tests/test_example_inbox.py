"""examples/inbox.py runs: a refund retried after failures before and after its commit, and
enqueued twice, credits the order once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_inbox_example_credits_once() -> None:
    done = subprocess.run(
        [sys.executable, "examples/inbox.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "refund completed attempts=3: already refunded",
        "refund completed attempts=1: already refunded",
        "credits: [('A-17', 4200)]",
        "expired keys purged: 0",
    ]
