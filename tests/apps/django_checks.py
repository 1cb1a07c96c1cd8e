"""What the Django backend refuses and how it retries, checked in process on the memory broker
(through ``taskit.testing.Harness``). Run under Python 3.12 by tests/test_example_django.py, with
the example project's ``shop`` app; prints what it saw as one JSON document."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "django_project"))

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["shop"],
    USE_TZ=True,
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    TASKS={
        "default": {
            "BACKEND": "taskit.django.TaskitBackend",
            "QUEUES": ["default", "emails", "slow"],
            "OPTIONS": {"broker_url": "memory://", "max_retries": 1},
        },
        "other": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
    },
)
django.setup()

from django.tasks import task_backends  # noqa: E402
from django.tasks.exceptions import InvalidTaskBackend, TaskResultDoesNotExist  # noqa: E402
from shop import tasks  # noqa: E402

from taskit.django import JOB_TYPE, RefusedTaskError, TaskitBackend  # noqa: E402
from taskit.django.runner import resolve_task  # noqa: E402
from taskit.testing import Harness  # noqa: E402


def refused(path: str) -> str:
    try:
        resolve_task(path)
    except RefusedTaskError as exc:
        return str(exc)
    return "ran"


def bad_options(options: dict[str, Any]) -> str:
    try:
        TaskitBackend("bad", {"OPTIONS": options}).app  # noqa: B018 - building it is the check
    except InvalidTaskBackend as exc:
        return str(exc)
    return "accepted"


async def main() -> None:
    seen: dict[str, Any] = {}
    before = "json.tool" in sys.modules
    seen["outside_apps"] = refused("json.tool.main")
    seen["outside_apps_imported"] = [before, "json.tool" in sys.modules]  # before, after
    seen["not_a_task"] = refused("shop.models.Order")
    seen["no_such_task"] = refused("shop.tasks.missing")
    seen["unknown_option"] = bad_options({"brokr_url": "memory://"})
    seen["both_app_and_url"] = bad_options({"app": "x:app", "broker_url": "memory://"})
    seen["app_not_an_app"] = bad_options({"app": "shop.tasks:add"})
    seen["negative_retries"] = bad_options({"max_retries": -1})
    seen["on_commit_not_bool"] = bad_options({"enqueue_on_commit": "yes"})
    backend = task_backends["default"]
    assert isinstance(backend, TaskitBackend)
    with Harness(backend.app) as harness:
        flaky = await tasks.flaky.aenqueue()
        other = await backend.app.get_task(JOB_TYPE).enqueue(
            task="shop.tasks.add", backend="other", args=[1, 2], kwargs={}
        )
        outside = await backend.app.get_task(JOB_TYPE).enqueue(
            task="json.tool.main", backend="default", args=[], kwargs={}
        )
        plain = await backend.app.remote("billing.invoice").enqueue(7)  # not a Django call
        try:
            await backend.aget_result(plain.id)
            seen["plain_job_read"] = "read"
        except TaskResultDoesNotExist:
            seen["plain_job_read"] = "does not exist"
        await harness.drain()
        result = await backend.aget_result(flaky.id)
        seen["flaky"] = {
            "status": str(result.status),
            "return_value": result.return_value,
            "attempts": result.attempts,
            "errors": [e.exception_class_path for e in result.errors],
        }
        for name, job in (("other_backend", other), ("outside_job", outside)):
            stored = await backend.app.get_job(job.id)
            assert stored is not None
            seen[name] = {"status": str(stored.status), "error_type": stored.error_type,
                          "error": stored.error}  # fmt: skip
    seen["immediate_is_not_taskit"] = not isinstance(task_backends["other"], TaskitBackend)
    print(json.dumps(seen, indent=1, sort_keys=True))


asyncio.run(main())
