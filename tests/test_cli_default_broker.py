"""The ``taskit`` commands' default broker (docs/configuration.md, "The default broker"): with
nothing configured, a ``taskit worker`` and a ``taskit enqueue`` started as separate processes
in one directory share the SQLite file ``./.taskit/jobs.db``; a broker that is named wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

APP_SOURCE = """
from pathlib import Path

from taskit import App

app = App()


@app.task(name="note")
def note(text: str) -> None:
    Path("ran.txt").write_text(text)
"""


def _env() -> dict[str, str]:
    """This environment without any ``TASKIT_*`` variable: nothing configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKIT_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def _taskit(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskit", *args], cwd=cwd, env=env or _env(),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "jobs_app.py").write_text(APP_SOURCE)
    return tmp_path


class _Lines:
    """A subprocess's stderr lines, read by a thread; ``wait_for`` blocks until one matches."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._proc = proc
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def close(self) -> None:
        """After the process ended: the rest read, the pipe closed."""
        self._reader.join(timeout=10)
        assert self._proc.stderr is not None
        self._proc.stderr.close()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                assert left > 0, f"no line with {text!r} in:\n{''.join(self.lines)}"
                self._changed.wait(left)
            return next(line for line in self.lines if text in line)


def test_with_nothing_configured_a_worker_runs_what_another_process_enqueued(
    project: Path,
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskit", "worker", "jobs_app:app", "--concurrency", "1"],
        cwd=project, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = _Lines(worker)
    try:
        database = project / ".taskit" / "jobs.db"
        assert str(database) in log.wait_for("using the SQLite file")
        log.wait_for("starting:")
        done = _taskit(project, "enqueue", "jobs_app:app", "note", "--args", '["handed over"]')
        assert done.returncode == 0, done.stderr
        assert f"using the SQLite file {database}" in done.stderr  # said on stderr...
        job_id = done.stdout.strip()  # ...so stdout is the id alone
        log.wait_for(job_id)
        deadline = time.monotonic() + 20
        while not (project / "ran.txt").exists():
            assert time.monotonic() < deadline, "".join(log.lines)
            time.sleep(0.05)
        assert (project / "ran.txt").read_text() == "handed over"
        assert "in-process memory://" not in "".join(log.lines)  # no warning: it is shared
    finally:
        worker.terminate()
        status = worker.wait(timeout=30)
        log.close()
    assert status == 0, "".join(log.lines)
    assert (project / ".taskit" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_admin_commands_read_the_default_file(project: Path) -> None:
    done = _taskit(project, "enqueue", "jobs_app:app", "note", "--args", '["x"]')
    assert done.returncode == 0, done.stderr
    info = _taskit(project, "info", "jobs_app:app", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["queues"]["default"]["queued"] == 1


def test_a_named_broker_wins_and_no_default_file_is_made(project: Path) -> None:
    env = {**_env(), "TASKIT_BROKER_URL": "sqlite:///named.db"}
    done = _taskit(project, "enqueue", "jobs_app:app", "note", "--args", '["x"]', env=env)
    assert done.returncode == 0, done.stderr
    assert "using the SQLite file" not in done.stderr
    assert (project / "named.db").exists()
    assert not (project / ".taskit").exists()
    info = _taskit(project, "info", "jobs_app:app", "--json", env=env)
    assert json.loads(info.stdout)["queues"]["default"]["queued"] == 1


def test_an_unwritable_default_directory_is_one_clear_line(project: Path) -> None:
    (project / ".taskit").write_text("a file where the directory goes")
    done = _taskit(project, "info", "jobs_app:app")
    assert done.returncode == 1
    assert "default SQLite file's directory" in done.stderr
    assert "TASKIT_BROKER_URL" in done.stderr
    assert "Traceback" not in done.stderr
