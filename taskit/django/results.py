"""A taskit job read as a Django ``TaskResult``: statuses, times, errors and the return value.

taskit keeps one record per job (``taskit.job.Job``); Django's ``TaskResult`` is a view of it:

| taskit ``JobStatus``                        | Django ``TaskResultStatus`` |
|---------------------------------------------|-----------------------------|
| PENDING, SCHEDULED, RETRYING                | READY                       |
| RUNNING                                     | RUNNING                     |
| COMPLETED                                   | SUCCESSFUL                  |
| FAILED, DEAD_LETTER, CANCELLED              | FAILED                      |

taskit keeps the most recent failure of a job, so ``errors`` holds at most one ``TaskError``
(also after a later retry succeeded, as Django lists every error raised). taskit does not record
which worker ran an attempt: ``worker_ids`` has one entry, ``"taskit"``, per attempt started, so
``TaskResult.attempts`` (and ``TaskContext.attempt``) is the job's ``attempts``.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar

import msgspec
from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError

import taskit.errors
from taskit.job import Job, JobStatus

__all__ = [
    "WORKER_ID",
    "Payload",
    "class_path",
    "error_path",
    "task_result",
]

P = ParamSpec("P")
R = TypeVar("R")
if TYPE_CHECKING:  # Django's classes are generic in django-stubs only, not at run time
    #: A Django task and a result of one, whatever its parameters and return type.
    AnyTask: TypeAlias = Task[..., Any]
    AnyTaskResult: TypeAlias = TaskResult[..., Any]

#: What ``worker_ids`` holds for each attempt started (taskit does not record the worker).
WORKER_ID = "taskit"

_STATUSES = {
    JobStatus.PENDING: TaskResultStatus.READY,
    JobStatus.SCHEDULED: TaskResultStatus.READY,
    JobStatus.RETRYING: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.DEAD_LETTER: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}


class Payload(msgspec.Struct, kw_only=True):
    """What one Django task call travels as: the keyword payload of a ``taskit.django`` job.

    ``task`` is the Django task's module path, ``backend`` the alias of the backend it was
    enqueued through; ``args`` / ``kwargs`` are JSON values (Django's ``normalize_json``), and
    ``run_after`` the aware time the call was deferred to, if it was."""

    task: str
    backend: str
    args: list[Any]
    kwargs: dict[str, Any]
    run_after: datetime | None = None


def class_path(error: BaseException) -> str:
    """The dotted path of ``error``'s class, as ``TaskError.exception_class_path`` wants it."""
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def error_path(error_type: str | None) -> str:
    """``exception_class_path`` for a stored ``error_type``.

    The worker stores the full path of a Django task's final failure. Any other failure (an
    attempt that will be retried, a timeout, an expiry) stores taskit's bare type name: builtins
    and taskit's own errors get their module back; any other name is kept as it is."""
    name = error_type or "Exception"
    if "." in name:
        return name
    if isinstance(getattr(builtins, name, None), type):
        return f"builtins.{name}"
    if isinstance(getattr(taskit.errors, name, None), type):
        return f"taskit.errors.{name}"
    return name


def _errors(job: Job) -> list[TaskError]:
    if job.error is None and job.error_type is None:
        return []
    trace = job.traceback or f"{job.error_type}: {job.error}"
    return [TaskError(exception_class_path=error_path(job.error_type), traceback=trace)]


def _finished_at(job: Job) -> datetime | None:
    if not job.status.finished:
        return None
    return job.completed_at or job.failed_at


def task_result(job: Job, task: Task[P, R], payload: Payload) -> TaskResult[P, R]:
    """The ``TaskResult`` of ``job``, a call of ``task`` (the task as it was decorated).

    The result's task carries the call's priority, queue and ``run_after``, read back from the
    job. The return value is set only for a SUCCESSFUL job, as Django's ``return_value`` reads
    it then alone."""
    priority = min(max(job.priority, TASK_MIN_PRIORITY), TASK_MAX_PRIORITY)
    called = task.using(
        priority=priority, queue_name=job.queue, run_after=payload.run_after,
        backend=payload.backend,
    )  # fmt: skip
    status = _STATUSES[job.status]
    result: TaskResult[P, R] = TaskResult(
        task=called, id=job.id, status=status, enqueued_at=job.created_at,
        started_at=job.started_at, finished_at=_finished_at(job),
        last_attempted_at=job.started_at, args=payload.args, kwargs=payload.kwargs,
        backend=payload.backend, errors=_errors(job), worker_ids=[WORKER_ID] * job.attempts,
    )  # fmt: skip
    if status is TaskResultStatus.SUCCESSFUL and job.result is not None:
        object.__setattr__(result, "_return_value", job.result.value)  # frozen, as Django does
    return result
