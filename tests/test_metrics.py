"""Prometheus metrics on the memory broker, and what happens without prometheus_client."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskit import App, ConfigurationError, Fail, MemoryBroker
from taskit.metrics import Metrics

pytestmark = pytest.mark.anyio


def make_app() -> App:
    app = App(MemoryBroker())

    @app.task(name="ok")
    async def ok() -> None: ...

    @app.task(name="bad", max_retries=1, backoff=0.0)
    def bad() -> None:
        raise KeyError("missing")

    @app.task(name="no")
    def no() -> None:
        raise Fail("refused")

    return app


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    result = metrics.registry.get_sample_value(name, labels)
    return None if result is None else float(result)


async def test_counters_and_histogram_follow_the_jobs() -> None:
    app = make_app()
    metrics = Metrics(app)
    for name in ("ok", "ok", "bad", "no"):
        await app.enqueue(name)
    await app.worker().run(burst=True)
    assert value(metrics, "taskit_jobs_processed_total", task="ok", outcome="completed") == 2
    assert value(metrics, "taskit_jobs_processed_total", task="bad", outcome="retried") == 1
    assert value(metrics, "taskit_jobs_processed_total", task="bad", outcome="dead_lettered") == 1
    assert value(metrics, "taskit_jobs_processed_total", task="no", outcome="failed") == 1
    assert value(metrics, "taskit_job_failures_total", task="bad", error_type="KeyError") == 2
    assert value(metrics, "taskit_job_failures_total", task="no", error_type="Fail") == 1
    assert value(metrics, "taskit_job_retries_total", task="bad") == 1
    assert value(metrics, "taskit_job_duration_seconds_count", task="ok") == 2
    text = metrics.text()
    assert "# TYPE taskit_job_duration_seconds histogram" in text
    assert "# TYPE taskit_jobs_processed_total counter" in text


async def test_gauges_come_from_the_broker() -> None:
    app = make_app()
    metrics = Metrics(app)
    await app.enqueue("ok")
    await app.get_task("ok").options(queue="later").schedule(60)
    await app.broker.announce("w1", b"{}", ttl=30)
    await metrics.refresh()
    assert value(metrics, "taskit_queue_depth", queue="default") == 1
    assert value(metrics, "taskit_queue_scheduled", queue="later") == 1
    assert value(metrics, "taskit_dead_letters", queue="default") == 0
    assert value(metrics, "taskit_jobs_running", queue="default") == 0
    assert value(metrics, "taskit_workers") == 1


async def test_a_refresh_that_fails_is_logged_and_retried(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio

    app = make_app()
    metrics = Metrics(app)

    async def down(queues: object = None) -> dict[str, object]:
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(app.broker, "stats", down)
    with anyio.move_on_after(0.05):
        await metrics.refresh_forever(interval=0.01)
    assert "refreshing the metrics gauges failed: no broker" in caplog.text


def test_metrics_are_served_over_http() -> None:
    import urllib.request

    from tests.e2e.helpers import free_port

    metrics = Metrics(make_app())
    port = free_port()
    server = metrics.serve(port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert b"taskit_workers" in reply.read()
    finally:
        server.shutdown()
        server.server_close()


def test_without_prometheus_client_only_metrics_fail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", root.handlers[:])  # the CLI configures logging
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now raises ImportError
    import taskit.cli
    import taskit.metrics

    app = make_app()
    with pytest.raises(ConfigurationError, match=r"pip install 'taskit\[prometheus\]'"):
        taskit.metrics.Metrics(app)
    assert not app.events  # nothing was subscribed
    # examples.app names no broker: the command's default SQLite file goes in a temporary dir
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        taskit.cli.main, ["worker", "examples.app:app", "--burst", "--metrics-port", "0"]
    )
    assert result.exit_code == 1
    assert "--metrics-port 0: metrics need prometheus_client" in result.output
