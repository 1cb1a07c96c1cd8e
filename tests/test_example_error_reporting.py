"""examples/error_reporting.py runs, and its stand-in reporter gets one report per job that ended
in failure, with what a tracker needs: message, type, traceback, task, job id, attempt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_reports_each_failed_job_once() -> None:
    done = subprocess.run(
        [sys.executable, "examples/error_reporting.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines[:2]) == [
        "reported [dead_lettered] charge: payment gateway unreachable for A-17 (attempt 3, "
        "ConnectionError; ConnectionError: payment gateway unreachable for A-17)",
        "reported [failed] validate: 'not-an-email' is not an email address (attempt 1, Fail; "
        "taskit.errors.Fail: 'not-an-email' is not an email address)",
    ]
    assert "completed=1, failed=1, retried=2, dead_lettered=1" in lines[2]


def test_each_report_carries_the_jobs_failure_and_where_it_ran() -> None:
    from examples import error_reporting

    anyio.run(error_reporting.main)
    by_task = {r["tags"]["task"]: r for r in error_reporting.reports}
    assert sorted(by_task) == ["charge", "validate"]  # the completed job and the retries: none
    charge = by_task["charge"]
    assert charge["exception"]["type"] == "ConnectionError"
    assert (
        'raise ConnectionError(f"payment gateway unreachable' in charge["exception"]["stacktrace"]
    )
    assert charge["fingerprint"] == ["charge", "ConnectionError"]
    assert charge["extra"]["attempt"] == 3
    assert charge["extra"]["worker"] == "worker-1"
    assert charge["extra"]["job_id"]
    assert charge["tags"] == {"task": "charge", "queue": "default", "outcome": "dead_lettered"}
