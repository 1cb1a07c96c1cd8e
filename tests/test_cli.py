"""The `taskit` command, run as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import worker_process

ROOT = Path(__file__).resolve().parent.parent


def taskit(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskit", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def test_version() -> None:
    done = taskit("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("taskit, version ")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("examples.app", "expected MODULE:ATTR"),
        ("no_such_module_xyz:app", "cannot import 'no_such_module_xyz': no such module"),
        ("examples.app:nope", "'examples.app' has no attribute 'nope'"),
        ("examples.app:add", "'examples.app:add' is a Task, not a taskit.App"),
    ],
)
def test_bad_app_path_fails_with_one_line(target: str, message: str) -> None:
    done = taskit("worker", target)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    assert any(message in line for line in lines), done.stderr
    assert len([line for line in lines if line.startswith("Error")]) == 1


def test_module_that_raises_on_import_fails_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('config missing')\n")
    done = subprocess.run(
        [sys.executable, "-m", "taskit", "worker", "broken_app:app"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "importing 'broken_app' failed: RuntimeError: config missing" in done.stderr


@pytest.mark.parametrize(
    ("loop", "runs_on"),
    [
        ("auto", "asyncio+uvloop"),
        ("asyncio", "asyncio"),
        ("uvloop", "asyncio+uvloop"),
        ("trio", "trio"),
    ],
)
def test_worker_subprocess_exits_zero_on_sigterm(loop: str, runs_on: str) -> None:
    env = {**os.environ, "TASKIT_BROKER_URL": "memory://", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "taskit", "worker", "examples.app:app"]
    proc = subprocess.Popen(
        [*command, "-c", "2", "-q", "a,b", "--loop", loop],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # the worker logs one line once it is running
            seen.append(line)
            if "starting: queues=a,b concurrency=2" in line:
                break
        else:
            pytest.fail(f"worker never started: {''.join(seen)}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        rest = proc.stderr.read()
        assert "got SIGTERM: stopping gracefully" in rest
        assert f"event loop: {runs_on}" in "".join(seen)
        assert "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_password_never_logged_while_the_broker_is_unreachable() -> None:
    env = {"TASKIT_BROKER_URL": "redis://user:s3cret@127.0.0.1:1/0"}
    with worker_process("examples.app:app", env) as worker:
        assert "redis://user:***@127.0.0.1:1/0" in worker.wait_for_line("starting:")
        worker.wait_for_line("reserve failed")  # it tried, failed, and said so
        assert worker.terminate() == 0
    assert "s3cret" not in worker.log


def test_a_worker_on_the_memory_broker_says_at_start_what_it_can_reach() -> None:
    """On memory:// a worker sees only jobs its own process enqueues: said once at start, with
    the fix, instead of a worker that silently never receives a job."""
    env = {**os.environ, "TASKIT_BROKER_URL": "memory://"}
    done = taskit("worker", "examples.app:app", "--burst", env=env)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert "in-process memory:// one" in line
    assert "only jobs enqueued inside this process" in line
    # the variable chose memory://: unset it (the SQLite default), or name a shared broker
    assert "unset it" in line
    assert "TASKIT_BROKER_URL=sqlite:" in line


@pytest.mark.redis
def test_a_worker_on_redis_does_not_warn_about_memory(redis_url: str) -> None:
    env = {**os.environ, "TASKIT_BROKER_URL": f"{redis_url}?prefix=cli-nowarn"}
    done = taskit("worker", "examples.app:app", "--burst", env=env)
    assert done.returncode == 0, done.stderr
    assert "in-process memory://" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "examples.app:app", "-c", "2147483648"], "'--concurrency'"),
        (["worker", "examples.app:app", "-c", "2.5"], "'--concurrency'"),
        (["worker", "examples.app:app", "--metrics-port", "70000"], "'--metrics-port'"),
        (["check", "examples.app:app", "--min-workers", "-1"], "'--min-workers'"),
        (["dlq", "list", "examples.app:app", "--limit", "nan"], "'--limit'"),
        (["enqueue", "examples.app:app", "examples.add", "--delay", "inf"], "'--delay'"),
        (["enqueue", "examples.app:app", "examples.add", "--delay", "1e300"], "'--delay'"),
        (["worker", "examples.app:app", "-c", "1_000"], "'--concurrency'"),
        (["worker", "examples.app:app", "-c", "\u0663"], "'--concurrency'"),
        (["worker", "examples.app:app", "--prefetch", "-1"], "'--prefetch'"),
        (["worker", "examples.app:app", "--prefetch", "1.5"], "'--prefetch'"),
        (["enqueue", "examples.app:app", "examples.add", "--delay", "1_0"], "'--delay'"),
        (["enqueue", "examples.app:app", "examples.add", "--delay", "\uff15"], "'--delay'"),
        (["scheduler", "examples.app:app", "--log-level", "bogus"], "'--log-level'"),
        # was exit 1, "arguments do not fit task ...: queue must be a non-empty string"
        (["enqueue", "tests.apps.ops_app:app", "ops.add", "-q", " "], "'--queue'"),
        # were 'deleted 0' and exit 0: a blank name matched no queue
        (["purge", "tests.apps.ops_app:app", " ", "--yes"], "'QUEUE'"),
        (["dlq", "purge", "tests.apps.ops_app:app", "-q", "", "--yes"], "'--queue'"),
        (["dlq", "list", "tests.apps.ops_app:app", "-q", " "], "'--queue'"),
        (["dlq", "requeue", "tests.apps.ops_app:app", "--all", "-q", " "], "'--queue'"),
        (["worker", "examples.app:app", "--log-level", "bogus"], "'--log-level'"),
    ],
)
def test_a_bad_option_value_is_a_usage_error_not_a_traceback(args: list[str], message: str) -> None:
    done = taskit(*args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"Invalid value for {message}" in done.stderr


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("redis://127.0.0.1:99999/0", "port '99999'"),
        ("redis://127.0.0.1/x", "the database /x"),
        ("redis://127.0.0.1/0?bogus=1", "unknown option 'bogus'"),
    ],
)
def test_a_bad_broker_url_stops_the_worker_at_start_with_one_line(url: str, part: str) -> None:
    done = taskit(
        "worker", "examples.app:app", "--burst", env={**os.environ, "TASKIT_BROKER_URL": url}
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"TASKIT_BROKER_URL: broker URL {url}: {part}" in done.stderr
