"""Every example runs, so none of them rots."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

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


def run_example(path: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, path], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_class_handlers_retry_fail_and_dead_letter_on_purpose() -> None:
    lines = run_example("examples/handlers.py")
    assert lines[0].split()[:3] == ["email.send", "completed", "attempts=3"]
    assert lines[1].split()[:3] == ["email.send", "failed", "attempts=1"]
    assert "no template 'gone'" in lines[1]
    assert lines[2].split()[:3] == ["payment.charge", "dead_letter", "attempts=3"]
    assert lines[3].startswith("dead letter: payment.charge {'order': 'A-17'} TimeoutError")
    alerts = {line for line in lines if line.startswith("alert: ")}
    assert alerts == {
        "alert: email.send attempt 1: SMTP server not answering",
        "alert: email.send attempt 2: SMTP server not answering",
        "alert: payment.charge dead-lettered after 3 attempts",
    }
    assert "sent: ['ada@example.com: Welcome, Ada!']" in lines
    assert "completed=1, failed=1, retried=4, dead_lettered=1" in lines[-1]


def test_the_example_tests_for_users_pass() -> None:
    """examples/test_example_app.py shows users how to test with taskit.testing; it must pass,
    with the taskit_harness fixture found through the pytest11 entry point."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/test_example_app.py", "-q",
         "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_fastapi_enqueues_from_a_request_and_runs_workers_in_its_lifespan() -> None:
    from fastapi.testclient import TestClient

    from examples import fastapi_app

    with TestClient(fastapi_app.api) as client:  # runs the lifespan: the workers start
        reply = client.post("/signup", json={"email": "ada@example.com"})
        assert reply.status_code == 202
        job_id = reply.json()["job_id"]
        deadline = time.monotonic() + 10
        while (status := client.get(f"/jobs/{job_id}").json())["status"] != "completed":
            assert time.monotonic() < deadline, status
            time.sleep(0.01)
        assert status == {
            "status": "completed",
            "attempts": 1,
            "value": "welcome mail sent to ada@example.com",
        }
        assert client.get("/jobs/nope").status_code == 404
        assert client.get("/jobs").json() == {
            "queued": 0, "processing": 0, "completed": 1, "failed": 0,
        }  # fmt: skip
    assert fastapi_app.welcomed == ["ada@example.com"]


def test_fastapi_lifespan_is_producer_only_on_a_shared_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient

    from examples import fastapi_app

    # As on Redis or SQLite, where `taskit worker` processes run the jobs.
    monkeypatch.setattr(fastapi_app, "runs_workers_in_process", lambda: False)
    with TestClient(fastapi_app.api) as client:
        before = client.get("/jobs").json()
        job_id = client.post("/signup", json={"email": "bob@example.com"}).json()["job_id"]
        assert client.get(f"/jobs/{job_id}").json()["status"] == "pending"
        assert client.get("/jobs").json()["queued"] == before["queued"] + 1
    assert "bob@example.com" not in fastapi_app.welcomed


def test_flask_enqueues_from_a_sync_view() -> None:
    from examples import flask_app

    client = flask_app.web.test_client()
    reply = client.post("/reports", json={"month": "2025-03", "fmt": "csv"})
    assert reply.status_code == 202
    job_id = reply.get_json()["job_id"]
    assert client.get(f"/reports/{job_id}").get_json() == {"status": "pending", "file": None}
    assert client.post("/reports", json={"fmt": "csv"}).status_code == 400

    async def work() -> None:  # what `taskit worker examples.flask_app:tasks --burst` does
        with anyio.fail_after(10):
            await flask_app.tasks.worker().run(burst=True)

    anyio.run(work)
    assert client.get(f"/reports/{job_id}").get_json() == {
        "status": "completed",
        "file": "report-2025-03.csv",
    }
    flask_app.tasks.close_sync()


def test_the_configuration_table_documents_every_variable() -> None:
    from taskit.config import _ENV

    table = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(TASKIT_[A-Z_]+)` \|", table, re.MULTILINE))
    assert {var for var, _ in _ENV.values()} <= documented


def test_the_periodic_example_runs_its_interval_schedule() -> None:
    lines = run_example("examples/periodic.py")
    assert lines[0] == "schedules: health.ping, reports.nightly"
    assert int(lines[1].removeprefix("pings: ")) >= 2  # due every 0.25 s for 1.2 s


@pytest.mark.anyio
async def test_the_nightly_cron_job_fires_at_three_in_paris_on_a_fake_clock() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from examples import periodic
    from taskit import JobStatus
    from taskit.scheduler import Scheduler
    from taskit.testing import FakeClock, Harness

    paris = ZoneInfo("Europe/Paris")
    clock = FakeClock(datetime(2025, 3, 1, 2, 59, tzinfo=paris).timestamp())
    with Harness(periodic.app, clock=clock) as harness:
        scheduler = Scheduler(periodic.app, clock=clock)
        assert [j.task for j in await scheduler.tick()] == []  # starts now: nothing due yet
        clock.set(datetime(2025, 3, 1, 3, 0, 1, tzinfo=paris).timestamp())
        fired = [j for j in await scheduler.tick() if j.task == "reports.nightly"]
        assert len(fired) == 1
        await harness.drain(["default"])
        [done] = await harness.jobs(task="reports.nightly")
    assert done.status is JobStatus.COMPLETED
    assert done.result is not None
    assert done.result.value == "nightly report as pdf"


def test_the_readme_quick_start_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quick start") :]
    code = section[section.index("```python\n") + 10 :]
    script = tmp_path / "readme_quick_start.py"
    script.write_text(code[: code.index("```")])
    lines = run_example(str(script))
    assert lines[0].startswith("JobResult(success=True, value=5")


def test_links_in_the_docs_lead_somewhere() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert broken == []
