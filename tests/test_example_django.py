"""The Django 6 tasks backend (taskit.django), driven through the example project in
examples/django_project under Python 3.12 (Django 6 needs it; taskit's own venv is 3.11).

``scripts/django_venv.py`` builds ``.venv-django`` once (rebuilt when pyproject.toml changes);
under ``CI=true`` a missing Python 3.12 fails these tests, elsewhere it skips them. The
walkthrough enqueues through Django's API, runs ``taskit worker taskit.django.worker:app`` on the
real Redis, and reads every result back through Django's ``TaskResult``, on SQLite and on the
real PostgreSQL; ``tests/apps/django_checks.py`` checks what the worker refuses, in process."""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests._ci import missing
from tests.test_layers import _graph

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "examples" / "django_project"


@pytest.fixture(scope="module")
def django_python() -> Path:
    """The 3.12 venv's python, built first if needed."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "django_venv.py")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode == 2:
        missing(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def _postgres_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
    except OSError:
        return False
    return True


def _run(python: Path, script: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), str(script)], cwd=PROJECT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    seen: dict[str, Any] = json.loads(done.stdout)
    return seen


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def walkthrough(
    request: pytest.FixtureRequest,
    django_python: Path,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """What examples/django_project/walkthrough.py saw (once per database), on a Redis prefix
    of its own."""
    env = {"DJANGO_SETTINGS_MODULE": "djproject.settings", "TASKIT_BROKER_URL": redis_url}
    if request.param == "postgres":
        if not _postgres_answers():
            missing("no PostgreSQL answers at 127.0.0.1:5432")
        env["SHOP_DATABASE"] = "postgres"
    else:
        env["SHOP_SQLITE"] = str(tmp_path_factory.mktemp("django") / "shop.sqlite3")
    prefix = env["TASKIT_REDIS_PREFIX"] = f"django-example-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    try:
        return _run(django_python, PROJECT / "walkthrough.py", env)
    finally:
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=500))
        if doomed:
            client.delete(*doomed)
        client.close()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.redis
def test_tasks_enqueue_through_django_and_run_on_taskit_worker(walkthrough: dict[str, Any]) -> None:
    seen = walkthrough
    assert seen["worker_exit"] == 0
    assert seen["enqueued"]["status"] == "READY"
    assert seen["enqueued"]["attempts"] == 0
    assert seen["add"] | {"started_at": None} == {
        "status": "SUCCESSFUL", "return_value": 5, "args": [2, 3], "kwargs": {}, "attempts": 1,
        "priority": 0, "queue_name": "default", "run_after": None, "finished": True,
        "errors": [], "started_at": None,
    }  # fmt: skip
    welcome = seen["welcome"]  # kwargs, the decorator's queue and priority; a tuple made JSON
    assert (welcome["kwargs"], welcome["queue_name"], welcome["priority"]) == (
        {"name": "Ada"}, "emails", 10,
    )  # fmt: skip
    assert welcome["return_value"]["tags"] == ["new", "web"]
    assert seen["async"]["return_value"] == 42
    context = seen["context"]["return_value"]  # TaskContext: the attempt and the result's id
    assert (context["label"], context["attempt"]) == ("ctx", 1)
    assert seen["context_id_matches"] is True


@pytest.mark.redis
def test_failures_read_back_with_the_exception_class_and_traceback(
    walkthrough: dict[str, Any],
) -> None:
    charge, not_json = walkthrough["charge"], walkthrough["not_json"]
    assert (charge["status"], charge["args"], charge["kwargs"]) == (
        "FAILED",
        ["A-17"],
        {"amount": 30},
    )
    assert charge["errors"] == [{
        "class": "shop.tasks.PaymentDeclined",
        "last_line": "shop.tasks.PaymentDeclined: card declined for A-17 (30 EUR)",
    }]  # fmt: skip
    assert not_json["status"] == "FAILED"  # a return value JSON cannot hold fails the task
    assert not_json["errors"][0]["class"] == "builtins.TypeError"


@pytest.mark.redis
def test_priority_run_after_and_running_status(walkthrough: dict[str, Any]) -> None:
    seen = walkthrough
    assert (seen["high"]["priority"], seen["low"]["priority"]) == (80, -5)
    assert _at(seen["high"]["started_at"]) < _at(seen["low"]["started_at"])  # one at a time
    later = seen["later"]
    assert later["status"] == "SUCCESSFUL"
    # taskit's times have millisecond precision: never before run_after, to the millisecond
    assert _at(later["started_at"]) >= _at(later["run_after"]) - timedelta(milliseconds=1)
    running = seen["slow_while_running"]
    assert (running["status"], running["finished"], running["attempts"]) == ("RUNNING", False, 1)
    assert seen["slow"]["return_value"] == "released"


@pytest.mark.redis
def test_results_through_the_task_and_unknown_ids(walkthrough: dict[str, Any]) -> None:
    assert walkthrough["task_get_result"]  # add.get_result(id) found its own result
    assert walkthrough["mismatch_refused"] is True  # another task's get_result refuses it
    assert walkthrough["unknown_missing"] is True


@pytest.mark.redis
def test_enqueue_on_commit_stores_the_job_only_when_the_transaction_commits(
    walkthrough: dict[str, Any],
) -> None:
    seen = walkthrough
    assert seen["receipt_stored_before_commit"] is False
    assert seen["receipt_stored_after_commit"] is True
    assert seen["receipt"]["return_value"] == "receipt for order 1: 42 EUR"
    assert seen["rolled_back_stored"] is False


def test_the_worker_refuses_what_is_not_a_django_task_of_a_taskit_backend(
    django_python: Path,
) -> None:
    seen = _run(django_python, ROOT / "tests" / "apps" / "django_checks.py", {})
    assert seen["outside_apps"] == "'json.tool.main' is not inside an installed Django app"
    assert seen["outside_apps_imported"] == [False, False]  # refused before any import
    assert seen["not_a_task"] == "'shop.models.Order' is a ModelBase, not a Django Task"
    assert "cannot be imported" in seen["no_such_task"]
    for name in ("other_backend", "outside_job"):  # jobs that name them fail, not retried
        assert seen[name]["status"] == "failed"
        assert seen[name]["error_type"] == "taskit.django.runner.RefusedTaskError"
    assert "'other' of 'shop.tasks.add' is not a taskit backend" in seen["other_backend"]["error"]
    assert seen["plain_job_read"] == "does not exist"  # a taskit job of another task
    assert "unknown OPTIONS ['brokr_url']" in seen["unknown_option"]
    assert "give OPTIONS 'app' or 'broker_url'" in seen["both_app_and_url"]
    assert "is a Task, not a taskit.App" in seen["app_not_an_app"]
    assert "max_retries must be >= 0, got -1" in seen["negative_retries"]
    assert "'enqueue_on_commit' is a bool" in seen["on_commit_not_bool"]
    # max_retries=1: the first failure is retried, kept in errors; the second attempt succeeds
    assert seen["flaky"] == {
        "status": "SUCCESSFUL", "return_value": 2, "attempts": 2,
        "errors": ["builtins.ConnectionError"],
    }  # fmt: skip


def test_without_django_6_the_import_error_names_the_extra() -> None:
    """taskit's own venv (Python 3.11) cannot install Django 6."""
    with pytest.raises(ImportError, match=re.escape("pip install 'taskit[django]'")):
        importlib.import_module("taskit.django")


def test_nothing_else_in_taskit_imports_taskit_django() -> None:
    graph = _graph()
    assert any(name.startswith("taskit.django.") for name in graph)  # the scan sees it
    outside = {name: imports for name, imports in graph.items() if "django" not in name}
    importers = {name for name, imports in outside.items() if any("django" in i for i in imports)}
    assert importers == set()
