"""Operations across real processes on a real Redis: two schedulers enqueue each run once; a
worker registers itself, shows in ``taskit check`` and drops out when killed; a worker serves
metrics, runs the scheduler and logs JSON lines."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.helpers import ROOT, WorkerProcess, free_port

APP = "tests.apps.ops_app:app"
pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def env(redis_url: str) -> Iterator[dict[str, str]]:
    prefix = f"ops-{uuid.uuid4().hex[:10]}"
    yield {"TASKIT_BROKER_URL": redis_url, "OPS_PREFIX": prefix}
    client = redis.Redis.from_url(redis_url)
    doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
    if doomed:
        client.delete(*doomed)
    client.close()


def taskit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskit", *args], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


class Process(WorkerProcess):
    """Any `taskit` subcommand (WorkerProcess runs `taskit worker`)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskit", *args], cwd=ROOT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


def test_two_scheduler_processes_enqueue_each_run_once(env: dict[str, str]) -> None:
    env = {**env, "OPS_EVERY": "0.2"}
    procs = [Process(env, "scheduler", APP) for _ in range(2)]
    try:
        for proc in procs:
            proc.wait_for_line("scheduler starting: ops.tick (every 0.2 s)")
        time.sleep(2.5)
        for proc in procs:
            assert proc.terminate() == 0
    finally:
        for proc in procs:
            proc.close()
    enqueued = [re.findall(r"enqueued job (\S+)", proc.log) for proc in procs]
    every = enqueued[0] + enqueued[1]
    assert len(every) >= 8, [p.log for p in procs]
    assert len(every) == len(set(every))  # no run enqueued by both
    dues = sorted(int(job_id.rsplit(":", 1)[1]) for job_id in every)
    assert all(b - a == 200 for a, b in itertools.pairwise(dues))  # and none skipped
    done = taskit(env, "info", APP, "--json")
    assert json.loads(done.stdout)["queues"]["default"]["queued"] == len(every)


def test_a_killed_worker_drops_out_of_the_registry(env: dict[str, str]) -> None:
    env = {**env, "TASKIT_HEARTBEAT_INTERVAL": "0.2"}
    assert taskit(env, "check", APP).returncode == 1
    worker = WorkerProcess(APP, env, "-c", "3")
    try:
        worker.wait_for_line("starting: queues=")
        deadline = time.monotonic() + 10
        while (done := taskit(env, "check", APP)).returncode != 0:
            assert time.monotonic() < deadline, done.stderr
        assert "1 live worker(s)" in done.stdout
        info = json.loads(taskit(env, "info", APP, "--json").stdout)
        [record] = info["workers"]
        assert (record["pid"], record["concurrency"], record["queues"]) == (
            worker.pid, 3, ["default"],
        )  # fmt: skip
        worker.proc.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        time.sleep(0.8)  # three missed beats and a little
        gone = taskit(env, "check", APP)
        assert gone.returncode == 1
        assert "0 live worker(s)" in gone.stderr
    finally:
        worker.close()


def test_a_worker_with_scheduler_metrics_and_json_logs(env: dict[str, str], tmp_path: Path) -> None:
    schedules = tmp_path / "schedules.toml"
    schedules.write_text('[[schedules]]\nname = "adder"\ntask = "ops.add"\nevery = 0.25\n'
                         "kwargs = { a = 1, b = 2 }\n")  # fmt: skip
    port = free_port()
    worker = WorkerProcess(
        APP, env, "--scheduler", "--schedules", str(schedules), "--metrics-port", str(port),
        "--log-format", "json",
    )  # fmt: skip
    try:
        worker.wait_for_line("starting: queues=")
        line = worker.wait_for_line('"message": "job schedule:adder:')
        record = json.loads(line)
        assert record["level"] == "INFO"
        assert record["task"] == "ops.add"
        assert record["queue"] == "default"
        completed = json.loads(worker.wait_for_line(") complete in "))
        assert completed["attempt"] == 1
        assert isinstance(completed["duration"], float)
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
            if 'taskit_jobs_processed_total{outcome="completed",task="ops.add"}' in text and (
                "taskit_workers 1.0" in text
            ):
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert worker.terminate() == 0
    finally:
        worker.close()


def test_scheduler_command_errors(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"task": "ops.nope", "every": 1}]')
    done = taskit(env, "scheduler", APP, "--schedules", str(bad))
    assert done.returncode == 1
    assert f"{bad}: entry 1: schedule 'ops.nope': unknown task 'ops.nope'" in done.stderr
    assert "Traceback" not in done.stderr
    done = taskit(env, "scheduler", "examples.app:app")
    assert done.returncode == 1
    assert "has no periodic schedules" in done.stderr
