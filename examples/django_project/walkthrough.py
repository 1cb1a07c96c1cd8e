"""Django 6 tasks on taskit, end to end: enqueue through Django, run ``taskit worker``, read the
results back through Django. Prints what it saw as one JSON document.

    cd examples/django_project
    DJANGO_SETTINGS_MODULE=djproject.settings TASKIT_BROKER_URL=redis://127.0.0.1:6379/0 \\
        python walkthrough.py

The worker it starts is what a deployment runs:
``taskit worker taskit.django.worker:app`` (here with ``--burst``: it exits when the queues are
empty). Needs Python >= 3.12 and ``pip install 'taskit[django,redis]'``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject.settings")
django.setup()

from django.db import connection, transaction  # noqa: E402
from django.tasks import TaskResult, TaskResultStatus, default_task_backend  # noqa: E402
from django.tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch  # noqa: E402
from shop import tasks  # noqa: E402
from shop.models import Order  # noqa: E402

HERE = Path(__file__).resolve().parent


class Rollback(Exception):
    pass


def describe(result: TaskResult) -> dict[str, Any]:
    """What a TaskResult says, as JSON."""
    result.refresh()
    seen: dict[str, Any] = {
        "status": str(result.status),
        "args": result.args,
        "kwargs": result.kwargs,
        "attempts": result.attempts,
        "priority": result.task.priority,
        "queue_name": result.task.queue_name,
        "run_after": result.task.run_after.isoformat() if result.task.run_after else None,
        "started_at": result.started_at.isoformat() if result.started_at else None,
        "finished": result.is_finished,
        "errors": [
            {"class": e.exception_class_path, "last_line": e.traceback.strip().splitlines()[-1]}
            for e in result.errors
        ],
    }
    if result.status == TaskResultStatus.SUCCESSFUL:
        seen["return_value"] = result.return_value
    return seen


def missing(result_id: str) -> bool:
    try:
        default_task_backend.get_result(result_id)
    except TaskResultDoesNotExist:
        return True
    return False


def on_commit(seen: dict[str, Any]) -> TaskResult:
    """A job enqueued in a transaction exists once it commits, and never if it rolls back."""
    with transaction.atomic():
        order = Order.objects.create(total=42)
        receipt = tasks.send_receipt.enqueue(order.pk)
        seen["receipt_stored_before_commit"] = not missing(receipt.id)
    seen["receipt_stored_after_commit"] = not missing(receipt.id)
    try:
        with transaction.atomic():
            doomed = tasks.send_receipt.enqueue(Order.objects.create(total=7).pk)
            raise Rollback
    except Rollback:
        pass
    seen["rolled_back_stored"] = not missing(doomed.id)
    return receipt


def run_worker(flag: Path, slow: TaskResult, seen: dict[str, Any]) -> None:
    """``taskit worker`` for the App of TASKS["default"], one job at a time, until idle; the
    slow task is watched while it runs, then released."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskit", "worker", "taskit.django.worker:app", "--burst",
         "--concurrency", "1", "--queues", "default,emails,slow"],
        cwd=HERE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while slow.status != TaskResultStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
            slow.refresh()
        seen["slow_while_running"] = describe(slow)
        flag.touch()
        seen["worker_exit"] = worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()


def main() -> None:
    with connection.cursor() as cursor:  # what a crashed run may have left
        cursor.execute(f"DROP TABLE IF EXISTS {Order._meta.db_table}")
    with connection.schema_editor() as editor:
        editor.create_model(Order)
    seen: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            flag = Path(scratch) / "release"
            soon = datetime.now(UTC) + timedelta(seconds=1)  # deferred: runs no sooner
            results = {
                "add": tasks.add.enqueue(2, 3),
                "welcome": tasks.send_welcome.enqueue("ada@example.com", name="Ada"),
                "charge": tasks.charge.enqueue("A-17", amount=30),
                "context": tasks.whoami.enqueue("ctx"),
                "async": tasks.double.enqueue(21),
                "not_json": tasks.make_set.enqueue(),
                "low": tasks.add.using(priority=-5).enqueue(1, 1),
                "high": tasks.add.using(priority=80).enqueue(2, 2),
                "later": tasks.add.using(run_after=soon).enqueue(5, 5),
                "slow": tasks.wait_for.enqueue(str(flag)),
            }
            seen["enqueued"] = describe(results["add"])
            results["receipt"] = on_commit(seen)
            run_worker(flag, results["slow"], seen)
            for name, result in results.items():
                seen[name] = describe(result)
            seen["context_id_matches"] = (
                seen["context"]["return_value"]["id"] == results["context"].id
            )
            seen["task_get_result"] = tasks.add.get_result(results["add"].id).id
            try:
                tasks.send_welcome.get_result(results["add"].id)
            except TaskResultMismatch:
                seen["mismatch_refused"] = True
            seen["unknown_missing"] = missing("no-such-id")
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(Order)
    print(json.dumps(seen, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
