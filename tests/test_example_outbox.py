"""examples/outbox.py runs: the committed signup's job runs once, the rolled-back one's never."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_outbox_example_relays_only_the_committed_job() -> None:
    done = subprocess.run(
        [sys.executable, "examples/outbox.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "rolled back: signup of bob@example.com failed after the enqueue",
        "relayed: 1 job(s)",
        "relayed again: 0 job(s)",
        "welcome mail to ada@example.com; jobs run: 1",
        "users: ['ada@example.com']",
    ]
