"""``TaskitBackend``: Django's tasks framework (``django.tasks``) on taskit.

    TASKS = {
        "default": {
            "BACKEND": "taskit.django.TaskitBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"app": "myproject.jobs:app", "enqueue_on_commit": True},
        }
    }

Each ``task.enqueue(...)`` stores one taskit job (``taskit.django.runner``), which
``taskit worker taskit.django.worker:app`` runs; ``get_result`` reads the job back as a
``TaskResult`` (``taskit.django.results``). Django's options map one to one: ``priority``
(-100..100) is taskit's priority (higher first), ``queue_name`` the taskit queue, ``run_after``
a scheduled job.

OPTIONS (all optional; an unknown key or a bad value raises ``InvalidTaskBackend``):

- ``app``: ``"module:attr"`` of the taskit ``App`` to enqueue through; or
- ``broker_url``: a broker URL for an App of the backend's own (neither: ``App()``, from
  ``TASKIT_*``).
- ``enqueue_on_commit`` (default False): inside ``transaction.atomic``, ``enqueue`` returns the
  ``TaskResult`` at once (its id made up front) and stores the job only when the outermost
  transaction commits; on rollback nothing is enqueued. Outside one, it enqueues at once.
- ``database`` (default ``"default"``): the database alias whose transactions that follows.
- ``max_retries`` (default 0, as Django retries nothing) and ``timeout`` (seconds; default the
  App's) for each job.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import msgspec
from django.db import transaction
from django.tasks import Task, TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTaskBackend, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json

from taskit.app import App
from taskit.django.results import Payload, task_result
from taskit.django.runner import JOB_TYPE, RefusedTaskError, install, resolve_task
from taskit.job import Job
from taskit.options import CallOptions
from taskit.task import scheduled

if TYPE_CHECKING:
    from taskit.django.results import AnyTask, AnyTaskResult

__all__ = ["TaskitBackend"]

P = ParamSpec("P")
R = TypeVar("R")

_OPTIONS = frozenset(
    {"app", "broker_url", "enqueue_on_commit", "database", "max_retries", "timeout"}
)


class TaskitBackend(BaseTaskBackend):
    """A Django task backend that enqueues through a taskit App; see the module docstring."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options: Mapping[str, Any] = self.options
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise InvalidTaskBackend(
                f"task backend {alias!r}: unknown OPTIONS {unknown}; known: {sorted(_OPTIONS)}"
            )
        if "app" in options and "broker_url" in options:
            raise InvalidTaskBackend(f"task backend {alias!r}: give OPTIONS 'app' or 'broker_url'")
        self._app_path = _text(alias, options, "app")
        self._broker_url = _text(alias, options, "broker_url")
        self._database = _text(alias, options, "database") or "default"
        self._on_commit = options.get("enqueue_on_commit", False)
        if not isinstance(self._on_commit, bool):
            raise InvalidTaskBackend(f"task backend {alias!r}: 'enqueue_on_commit' is a bool")
        self._call_options = {
            "max_retries": options.get("max_retries", 0), "timeout": options.get("timeout"),
        }  # fmt: skip
        try:  # checked here, as taskit checks them, rather than at the first enqueue
            CallOptions(**self._call_options)
        except (TypeError, ValueError) as exc:
            raise InvalidTaskBackend(f"task backend {alias!r}: OPTIONS {exc}") from None
        self._app: App | None = None  # built on first use: Django may not be set up yet here

    @property
    def app(self) -> App:
        """The taskit App this backend enqueues through, with the Django task runner
        registered on it (``taskit.django.runner.install``)."""
        if self._app is None:
            app = _load_app(self.alias, self._app_path) if self._app_path else None
            app = app or App(self._broker_url)
            install(app, TaskitBackend)
            self._app = app
        return self._app

    # -- enqueueing ---------------------------------------------------------------------------
    def enqueue(
        self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        """Store one job for ``task(*args, **kwargs)``; with ``enqueue_on_commit`` inside a
        transaction, once it commits. Raises ``InvalidTask`` for a task this backend cannot run
        and ``TypeError`` / ``ValueError`` for an argument that is not JSON."""
        self.validate_task(task)
        job, delay, payload = self._prepare(task, args, kwargs)
        if self._on_commit:
            submit = functools.partial(self._submit_sync, job, delay, task, payload)
            transaction.on_commit(submit, using=self._database)
        else:
            job = self._submit_sync(job, delay, task, payload)
        return task_result(job, task, payload)

    async def aenqueue(
        self, task: Task[P, R], args: list[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        """``enqueue`` on the caller's event loop (on a thread with ``enqueue_on_commit``, as
        Django's transactions are sync only)."""
        if self._on_commit:
            return await super().aenqueue(task, args, kwargs)
        self.validate_task(task)
        job, delay, payload = self._prepare(task, args, kwargs)
        job = (await self.app.producer.submit([job], [delay]))[0]
        return self._enqueued(job, task, payload)

    def _prepare(
        self, task: AnyTask, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[Job, float, Payload]:
        run_after: datetime | None = task.run_after
        if run_after is not None and timezone.is_naive(run_after):  # USE_TZ = False
            run_after = timezone.make_aware(run_after)
        plain_args, plain_kwargs = _json_args(args, kwargs)
        payload = Payload(
            task=task.module_path, backend=self.alias, args=plain_args, kwargs=plain_kwargs,
            run_after=run_after,
        )  # fmt: skip
        runner = self.app.get_task(JOB_TYPE).options(
            queue=task.queue_name, priority=task.priority, **self._call_options
        )
        job = runner.prepare(
            task=payload.task, backend=payload.backend, args=payload.args, kwargs=payload.kwargs,
            run_after=payload.run_after,
        )  # fmt: skip
        job, delay = scheduled(job, run_after) if run_after is not None else (job, 0.0)
        return job, delay, payload

    def _submit_sync(self, job: Job, delay: float, task: AnyTask, payload: Payload) -> Job:
        stored = self.app.producer.submit_sync([job], [delay])[0]
        self._enqueued(stored, task, payload)
        return stored

    def _enqueued(self, job: Job, task: Task[P, R], payload: Payload) -> TaskResult[P, R]:
        result = task_result(job, task, payload)
        task_enqueued.send(type(self), task_result=result)
        return result

    # -- reading ------------------------------------------------------------------------------
    def get_result(self, result_id: str) -> AnyTaskResult:
        """The ``TaskResult`` of job ``result_id``; ``TaskResultDoesNotExist`` when there is no
        such job (or its finished record expired: the App's ``result_ttl``), or it is not a
        Django task call."""
        return self._result(result_id, self.app.run_sync(self.app.get_job, result_id))

    async def aget_result(self, result_id: str) -> AnyTaskResult:
        """``get_result`` on the caller's event loop."""
        return self._result(result_id, await self.app.get_job(result_id))

    def _result(self, result_id: str, job: Job | None) -> AnyTaskResult:
        if job is None or job.task != JOB_TYPE:
            raise TaskResultDoesNotExist(result_id)
        payload = _payload(job)
        try:
            task = resolve_task(payload.task)
        except RefusedTaskError as exc:
            raise TaskResultDoesNotExist(f"{result_id}: {exc}") from None
        return task_result(job, task, payload)


def _json_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The arguments made JSON as Django's results keep them (a tuple becomes a list);
    ``TypeError`` / ``ValueError`` for a value JSON cannot hold."""
    plain_args, plain_kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
    assert isinstance(plain_args, list)  # a sequence stays a list,
    assert isinstance(plain_kwargs, dict)  # a mapping a dict
    return plain_args, plain_kwargs


def _payload(job: Job) -> Payload:
    try:
        return msgspec.convert(job.kwargs, Payload)
    except msgspec.ValidationError as exc:
        raise TaskResultDoesNotExist(f"{job.id}: not a Django task call ({exc})") from None


def _text(alias: str, options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidTaskBackend(f"task backend {alias!r}: OPTIONS {name!r} must be a string")
    return value


def _load_app(alias: str, path: str) -> App:
    """The App at ``module:attr``; ``InvalidTaskBackend`` saying what is wrong."""
    module_name, _, attr = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidTaskBackend(
            f"task backend {alias!r}: cannot load app {path!r}: {exc}"
        ) from exc
    if not isinstance(found, App):
        raise InvalidTaskBackend(
            f"task backend {alias!r}: app {path!r} is a {type(found).__name__}, not a taskit.App"
        )
    return found
