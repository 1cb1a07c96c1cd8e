"""examples/otel.py runs and prints one trace: the request, the enqueue's producer span, and
each attempt's consumer span under it, with the handler's own span and the settle inside."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_prints_one_trace_from_the_request_to_each_attempt() -> None:
    done = subprocess.run(
        [sys.executable, "examples/otel.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, *tree = done.stdout.splitlines()
    assert first.startswith("trace ")
    assert tree == [
        "  POST /orders/A-17 (internal)",
        "    send default (producer)",
        "      process default (consumer, attempt=1 outcome=retry, "
        "error: ConnectionError: carrier API timed out)",
        "        call carrier (internal, error: ConnectionError: carrier API timed out)",
        "        settle default (client)",
        "      process default (consumer, attempt=2 outcome=complete)",
        "        call carrier (internal)",
        "        settle default (client)",
    ]
