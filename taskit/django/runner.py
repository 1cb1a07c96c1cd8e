"""The one taskit task that runs Django tasks on ``taskit worker``.

Every Django task call travels as a job of the task ``taskit.django`` (``JOB_TYPE``), a class
handler registered on the backend's App, whose payload names the Django task by module path
(``taskit.django.results.Payload``). Workers still run only registered tasks: this handler is
the registered one, and it runs a path only when

1. the path lies inside an installed Django app (``INSTALLED_APPS``), checked *before* anything
   is imported, so a job cannot make a worker import an arbitrary module;
2. the object found there is a Django ``Task`` whose ``module_path`` is that path (no alias);
3. that task, on the backend the job names, is a taskit backend.

Anything else fails the job at once, without retry, with ``RefusedTaskError``. Registering each
Django task as a taskit task instead would have the project list every task twice (Django's
``@task`` knows nothing of taskit's App), and a task left off the list would fail only in the
worker.

A call runs as Django's own backends run it: in a worker thread (an ``async def`` task on an
event loop of its own there, through ``Task.call``), between ``close_old_connections()`` calls
as a request is, with Django's ``task_started`` / ``task_finished`` signals, the return value
made JSON (``normalize_json``). A raised exception is retried while the job has retries left
(the backend's ``max_retries``, 0 by default as Django retries nothing); the last one fails the
job and is stored with its class's full path and traceback, as ``TaskError`` wants them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import msgspec
from django.apps import apps
from django.db import close_old_connections
from django.tasks import Task, TaskContext, TaskResultStatus, task_backends
from django.tasks.exceptions import InvalidTaskBackend
from django.tasks.signals import task_finished, task_started
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from taskit.app import App
from taskit.django.results import Payload, class_path, task_result
from taskit.errors import TaskitError
from taskit.handlers import JobHandler
from taskit.job import Job, JobResult

if TYPE_CHECKING:
    from taskit.django.results import AnyTask

__all__ = ["JOB_TYPE", "DjangoTaskHandler", "RefusedTaskError", "install", "resolve_task"]

#: The taskit task name every Django task call is enqueued under.
JOB_TYPE = "taskit.django"


class RefusedTaskError(TaskitError, LookupError):
    """A job named a Django task path this worker will not run (see the module's rules)."""


def resolve_task(path: str) -> AnyTask:
    """The Django ``Task`` at module path ``path`` (``shop.tasks.send_receipt``).

    Raises ``RefusedTaskError`` if the path is outside every installed app (nothing is
    imported then), cannot be imported, or is not a ``Task`` decorated under that path."""
    module = path.rpartition(".")[0]
    if not module or apps.get_containing_app_config(module) is None:
        raise RefusedTaskError(f"{path!r} is not inside an installed Django app")
    try:
        found = import_string(path)
    except ImportError as exc:
        raise RefusedTaskError(f"{path!r} cannot be imported: {exc}") from None
    if not isinstance(found, Task):
        raise RefusedTaskError(f"{path!r} is a {type(found).__name__}, not a Django Task")
    if found.module_path != path:
        raise RefusedTaskError(f"{path!r} is an alias of {found.module_path!r}")
    return found


class DjangoTaskHandler(JobHandler):
    """Runs the Django task a job names; see the module docstring for what it refuses.

    ``backend_type``: the class a task's backend must be an instance of (the taskit backend:
    passed in, so this module need not import the backend that imports it)."""

    job_type = JOB_TYPE

    def __init__(self, backend_type: type) -> None:
        self.backend_type = backend_type

    async def handle(self, job: Job) -> JobResult:
        try:
            payload = msgspec.convert(job.kwargs, Payload)
            task = resolve_task(payload.task)
            if not isinstance(task_backends[payload.backend], self.backend_type):
                raise RefusedTaskError(
                    f"the task backend {payload.backend!r} of {payload.task!r} is not a taskit "
                    "backend"
                )
        except (msgspec.ValidationError, RefusedTaskError, InvalidTaskBackend) as exc:
            return _failed(exc)
        run = functools.partial(self._run, job, task, payload)
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)

    def _run(self, job: Job, task: AnyTask, payload: Payload) -> JobResult:
        """One attempt, in a worker thread; re-raises a failure that will be retried."""
        result = task_result(job, task, payload)
        args: list[Any] = list(payload.args)
        if task.takes_context:
            args.insert(0, TaskContext(task_result=result))
        sender = type(task_backends[payload.backend])
        close_old_connections()
        try:
            task_started.send(sender=sender, task_result=result)
            value = normalize_json(task.call(*args, **payload.kwargs))
        except Exception as exc:
            if job.attempts <= job.max_retries:
                raise  # taskit retries it: the job is READY again
            object.__setattr__(result, "status", TaskResultStatus.FAILED)
            task_finished.send(sender=sender, task_result=result)  # inside except: exc_info
            return _failed(exc)
        finally:
            close_old_connections()
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
        task_finished.send(sender=sender, task_result=result)
        return JobResult(success=True, value=value)


def _failed(error: BaseException) -> JobResult:
    """A failure the job ends with (not retried), its type stored as the class's full path
    (message and traceback as taskit stores any error: ``describe_error``)."""
    return JobResult(success=False, error=error, error_type=class_path(error))


def install(app: App, backend_type: type) -> None:
    """Register the handler on ``app`` unless it is there already (several backends may share
    one App). ``TypeError`` if ``app`` has a task named ``taskit.django`` of its own."""
    known = app.tasks.get(JOB_TYPE)
    if known is None:
        app.register(DjangoTaskHandler(backend_type))
    elif not isinstance(getattr(known, "handler", None), DjangoTaskHandler):
        raise TypeError(f"the App already has a task named {JOB_TYPE!r} that is not taskit's")
