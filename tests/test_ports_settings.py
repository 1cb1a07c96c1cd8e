"""The ports' settings: a metric name prefix (``metrics_prefix``, ``TASKIT_METRICS_PREFIX``,
``Metrics(prefix=)``, ``taskit worker --metrics-prefix``) and schedules from JSON text
(``schedule_json``, ``TASKIT_SCHEDULE_JSON``), loaded wherever the schedules file is, with the
file's format and errors."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

import taskit.cli
from taskit import App, ConfigurationError, MemoryBroker, Settings
from taskit.metrics import Metrics, stop_serving
from taskit.scheduler import load_schedules, load_schedules_json
from tests.e2e.helpers import ROOT, WorkerProcess, free_port

APP = "tests.apps.ops_app:app"
ADDER = '[{"name": "adder", "task": "ops.add", "every": 0.25, "kwargs": {"a": 1, "b": 2}}]'


def make_app(**settings: object) -> App:
    app = App(MemoryBroker(), settings=Settings(**settings))  # type: ignore[arg-type]

    @app.task(name="sweep")
    async def sweep(fmt: str = "pdf") -> None: ...

    return app


# -- settings --------------------------------------------------------------------------------
def test_settings_read_both_variables_and_check_the_prefix() -> None:
    assert (Settings().metrics_prefix, Settings().schedule_json) == ("taskit", None)
    env = {"TASKIT_METRICS_PREFIX": "myapp_jobs", "TASKIT_SCHEDULE_JSON": ADDER}
    settings = Settings.from_env(env)
    assert (settings.metrics_prefix, settings.schedule_json) == ("myapp_jobs", ADDER)
    assert Settings.from_env({"TASKIT_SCHEDULE_JSON": "  "}).schedule_json is None
    with pytest.raises(ConfigurationError, match=r"TASKIT_METRICS_PREFIX: metrics_prefix must"):
        Settings.from_env({"TASKIT_METRICS_PREFIX": "9lives"})
    for bad in ("", "my-app", "a b"):
        with pytest.raises(ConfigurationError, match="metrics_prefix must be") as caught:
            Settings(metrics_prefix=bad)
        assert caught.value.setting == "metrics_prefix"
    with pytest.raises(ConfigurationError, match="schedule_json must be JSON text"):
        Settings(schedule_json=[{"task": "x"}])  # type: ignore[arg-type]


# -- metrics ---------------------------------------------------------------------------------
def names(metrics: Metrics) -> set[str]:
    return {m.name for m in metrics.registry.collect()}


def test_metric_names_take_the_prefix_from_the_argument_or_the_settings() -> None:
    default = Metrics(make_app())
    assert "taskit_queue_depth" in names(default)
    assert default.prefix == "taskit"
    from_settings = Metrics(make_app(metrics_prefix="myapp_jobs"))
    assert {"myapp_jobs_jobs_processed", "myapp_jobs_queue_depth", "myapp_jobs_workers"} <= names(
        from_settings
    )
    assert not any(n.startswith("taskit_") for n in names(from_settings))
    given = Metrics(make_app(metrics_prefix="ignored"), prefix="svc:jobs")
    assert "svc:jobs_job_duration_seconds" in names(given)
    with pytest.raises(ConfigurationError, match="metrics_prefix must be"):
        Metrics(make_app(), prefix="no-dashes")


def test_cli_metrics_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", root.handlers[:])  # the CLI configures logging
    monkeypatch.setattr(root, "level", root.level)
    app = make_app(metrics_prefix="from_env")
    built = taskit.cli._metrics(app, free_port(), "from_flag")
    assert built is not None
    metrics, server = built
    try:
        assert "from_flag_queue_depth" in names(metrics)
    finally:
        stop_serving(server)
        server.server_close()
    built = taskit.cli._metrics(make_app(metrics_prefix="from_env"), free_port(), None)
    assert built is not None
    try:
        assert "from_env_queue_depth" in names(built[0])
    finally:
        stop_serving(built[1])
        built[1].server_close()
    # examples.app names no broker: the command's default SQLite file goes in a temporary dir
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    alone = runner.invoke(taskit.cli.main, ["worker", "examples.app:app", "--metrics-prefix", "x"])
    assert alone.exit_code == 2
    assert "--metrics-prefix needs --metrics-port" in alone.output
    bad = runner.invoke(
        taskit.cli.main,
        ["worker", "examples.app:app", "--metrics-port", "0", "--metrics-prefix", "9x"],
    )
    assert bad.exit_code == 1
    assert "--metrics-prefix 9x: metrics_prefix must be" in bad.output


# -- schedules from JSON ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    [
        '[{"task": "nope", "every": 5}]',
        '[{"task": "sweep", "cron": "0 25 * * *"}]',
        '[{"task": "sweep", "every": 5, "colour": 1}]',
        '[{"every": 5}]',
        '{"schedules": [{"task": "sweep", "every": "x"}]}',
        "[not json",
        '[{"task": "sweep", "every": 5}, {"task": "sweep", "every": 6}]',
    ],
)
def test_json_text_gives_the_files_errors_and_adds_nothing(tmp_path: Path, content: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    app = make_app()
    with pytest.raises(ConfigurationError) as from_file:
        load_schedules(app, path)
    with pytest.raises(ConfigurationError) as from_json:
        load_schedules_json(app, content)
    assert str(from_json.value) == str(from_file.value).replace(str(path), "TASKIT_SCHEDULE_JSON")
    assert str(from_json.value).startswith("TASKIT_SCHEDULE_JSON: ")
    assert app.schedules == {}


def test_json_text_adds_schedules_as_the_file_does(tmp_path: Path) -> None:
    text = '{"schedules": [{"name": "n", "task": "sweep", "cron": "0 3 * * *", "args": ["csv"]}]}'
    added = load_schedules_json(make_app(), text)
    path = tmp_path / "s.json"
    path.write_text(text)
    from_file = load_schedules(make_app(), path)
    assert [(s.name, s.task, s.args) for s in added] == [("n", "sweep", ("csv",))]
    assert [(s.name, s.task, s.args) for s in from_file] == [("n", "sweep", ("csv",))]
    assert load_schedules_json(make_app(), "[]", source="X") == []


@pytest.fixture
def env(redis_url: str) -> Iterator[dict[str, str]]:
    prefix = f"i13-ports-{uuid.uuid4().hex[:10]}"
    yield {"TASKIT_BROKER_URL": redis_url, "OPS_PREFIX": prefix}
    client = redis.Redis.from_url(redis_url)
    doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
    if doomed:
        client.delete(*doomed)
    client.close()


@pytest.mark.redis
@pytest.mark.slow
def test_a_worker_runs_the_schedules_of_taskit_schedule_json(env: dict[str, str]) -> None:
    worker = WorkerProcess(APP, {**env, "TASKIT_SCHEDULE_JSON": ADDER}, "--scheduler")
    try:
        worker.wait_for_line("starting: queues=")
        worker.wait_for_line("job schedule:adder:")
        worker.wait_for_line(") complete in ")
        assert worker.terminate() == 0
    finally:
        worker.close()


@pytest.mark.redis
def test_scheduler_command_refuses_a_bad_taskit_schedule_json(env: dict[str, str]) -> None:
    bad = '[{"task": "ops.nope", "every": 1}]'
    done = subprocess.run(
        [sys.executable, "-m", "taskit", "scheduler", APP], cwd=ROOT,
        env={**os.environ, **env, "TASKIT_SCHEDULE_JSON": bad},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "TASKIT_SCHEDULE_JSON: entry 1: schedule 'ops.nope': unknown task 'ops.nope'" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
