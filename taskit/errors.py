"""taskit's exception tree.

Every error taskit raises on purpose derives from :class:`TaskitError`. Where a builtin exception
describes the same problem, the taskit error also derives from it, so ``except ValueError`` keeps
working for code written against other job systems.

Two exceptions here are not errors but requests a task handler raises to steer its own job:
:class:`Retry` (run me again after a delay) and :class:`Fail` (stop now, do not retry).
"""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = [
    "BrokerAuthenticationError",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerOutOfMemoryError",
    "BrokerOutcomeUnknownError",
    "ConfigurationError",
    "CorruptJobError",
    "DuplicateTaskError",
    "Fail",
    "JobNotFoundError",
    "JobTimeoutError",
    "OnceBusy",
    "PayloadTooLargeError",
    "ResultTimeoutError",
    "Retry",
    "SerializationError",
    "TaskitError",
    "UnknownTaskError",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowNotFoundError",
]


class TaskitError(Exception):
    """Base class of every error taskit raises on purpose."""


class ConfigurationError(TaskitError, ValueError):
    """A setting, URL or option is invalid (names the setting and the bad value).

    ``setting`` is the name of the offending ``Settings`` field, when there is one.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class DuplicateTaskError(TaskitError, ValueError):
    """Two tasks were registered under one name on the same App."""


class UnknownTaskError(TaskitError, ValueError):
    """A task name is not registered on this App."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task {name!r}: no task of that name is registered on this App")
        self.name = name


class SerializationError(TaskitError, ValueError):
    """A value cannot be encoded as msgpack (names the argument) or decoded back."""


class PayloadTooLargeError(SerializationError):
    """A job's encoded arguments are bigger than ``Settings.max_payload_bytes``; nothing was
    enqueued. ``size`` and ``limit`` are in bytes."""

    def __init__(self, job_id: str, size: int, limit: int) -> None:
        super().__init__(
            f"job {job_id!r} has a payload of {size} bytes, over the limit of {limit} bytes "
            "(max_payload_bytes, TASKIT_MAX_PAYLOAD_BYTES); nothing was enqueued"
        )
        self.size = size
        self.limit = limit


class JobTimeoutError(TaskitError, TimeoutError):
    """A job ran longer than its ``timeout``; counts as a failure and is retried (unless its
    task's ``retry_on`` / ``dont_retry_on`` leave it out)."""


class JobNotFoundError(TaskitError, LookupError):
    """No job with that id exists (never created, or its result has expired)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class WorkflowNotFoundError(TaskitError, LookupError):
    """No workflow with that id exists (never created, or its record expired)."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow with id {workflow_id!r} (never created, or it expired)")
        self.workflow_id = workflow_id


class WorkflowFailed(TaskitError):
    """A workflow ended without a result: a node failed (or was dead-lettered) and what the
    caller waited for did not complete. It names the node that caused it (the first that failed
    of itself, not because a node it waited for did): ``node_id``, its ``task``, its
    ``status`` ("failed", "dead_letter", "cancelled"), its ``error_type`` and ``error``."""

    verb = "failed"

    def __init__(
        self,
        workflow_id: str,
        node_id: str,
        task: str,
        status: str,
        error: str | None,
        error_type: str | None,
    ) -> None:
        reason = ": ".join(part for part in (error_type, error) if part) or "no error recorded"
        super().__init__(
            f"workflow {workflow_id!r} {self.verb}: node {node_id!r} (task {task!r}) ended "
            f"{status}: {reason}"
        )
        self.workflow_id = workflow_id
        self.node_id = node_id
        self.task = task
        self.status = status
        self.error = error
        self.error_type = error_type


class WorkflowCancelled(WorkflowFailed):
    """A workflow ended without a result because a node was cancelled (``Workflow.cancel``,
    ``App.cancel`` of a node, a purge, an expiry) and none failed. A ``WorkflowFailed``, so one
    ``except`` catches both."""

    verb = "was cancelled"


class ResultTimeoutError(TaskitError, TimeoutError):
    """Waiting for a job's result took longer than the caller allowed."""


class BrokerError(TaskitError):
    """The broker failed or answered something it should not have."""


class CorruptJobError(BrokerError):
    """A job's stored record cannot be read: a field holds a value taskit never writes (damaged
    by hand, by a bad restore, or by another program).

    Raised only by read-only calls (``get``); paths that move jobs dead-letter such a record with
    the reason instead. ``job_id`` is the job's id, ``field`` the part that is unreadable (a state
    field such as ``attempts``, or ``record``, ``error``, ``result``).
    """

    def __init__(self, job_id: str, field: str, detail: str) -> None:
        super().__init__(f"job {job_id!r} has an unreadable stored record: {field} {detail}")
        self.job_id = job_id
        self.field = field
        self.detail = detail


class BrokerConnectionError(BrokerError, ConnectionError):
    """The broker cannot be reached (refused, or no connection within ``broker_timeout``, bad
    credentials): the command was not sent, so nothing happened. Its subclass
    ``BrokerOutcomeUnknownError`` says the command was sent and its reply lost."""


class BrokerOutcomeUnknownError(BrokerConnectionError):
    """The command reached the broker, but its reply did not come back (the connection dropped
    or ``broker_timeout`` passed): it may or may not have run.

    Retrying is safe where the command is idempotent: an enqueue with the same job id changes
    nothing if the first one was stored and the job has not finished (see the guide, "Retrying
    an enqueue safely"); a worker's settle is fenced by its lease token."""


class BrokerValueTooLargeError(BrokerError, SerializationError):
    """Redis refused a value bigger than it takes in one argument (``proto-max-bulk-len``,
    512 MB by default): nothing of the call was stored. A ``SerializationError`` too, as it is
    about what the call holds, not the broker's health: a worker fails that job alone (the
    other outcomes settled with it are settled one by one), and retrying the same call cannot
    help."""


class BrokerOutOfMemoryError(BrokerError):
    """Redis is full: its used memory is over ``maxmemory`` and, with ``maxmemory-policy
    noeviction``, it refuses every command that would store more. Nothing of the refused call was
    stored (Redis refuses a script at its first write, before it changed anything).

    Only calls that add data meet it: ``enqueue`` and the scheduler's claims. Everything that
    ends, frees or moves jobs already stored (settle, reclaim, extend, cancel, requeue, purge)
    keeps working under memory pressure (docs/redis.md). Retrying later with the same job id is
    safe; the fix is to free memory (purge, a shorter ``result_ttl``) or raise ``maxmemory``."""


class BrokerAuthenticationError(BrokerConnectionError):
    """The broker refused the credentials (wrong password, unknown user, missing permission).

    Unlike an outage this does not heal by waiting: a worker stops at once with this error."""


def _seconds(delay: float | timedelta | None) -> float | None:
    if delay is None:
        return None
    try:
        if isinstance(delay, bool):
            raise TypeError
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    except (TypeError, ValueError, OverflowError):  # junk, or an int past float range
        seconds = math.nan
    if not 0 <= seconds < float("inf"):  # also rejects NaN
        raise ValueError(f"retry delay must be a finite number of seconds >= 0, got {delay!r}")
    return seconds


class Retry(Exception):
    """Raise from a handler to retry the job after ``delay`` seconds.

    With ``delay=None`` the task's backoff policy picks the delay. The retry counts as an attempt:
    when ``max_retries`` is spent the job is dead-lettered instead.
    """

    def __init__(
        self, delay: float | timedelta | None = None, reason: str = "retry requested"
    ) -> None:
        super().__init__(reason)
        self.delay = _seconds(delay)
        self.reason = reason


class Fail(Exception):
    """Raise from a handler to fail the job at once: status FAILED, no retry."""

    def __init__(self, reason: str = "failed") -> None:
        super().__init__(reason)
        self.reason = reason


class OnceBusy(TaskitError, Retry):
    """Entering ``App.once(key)`` found ``key`` held by another run: its work is under way, or
    its worker died less than the guard's ``hold`` ago. Neither done nor free, so the caller may
    neither skip nor do the work now. A ``Retry``: raised out of a handler, the job is retried
    after ``delay`` (the task's backoff when None) and then finds the key done (it skips) or
    free (it does the work). It counts as an attempt."""

    def __init__(self, key: str, delay: float | timedelta | None = None) -> None:
        Retry.__init__(self, delay, f"once key {key!r} is held by another run")
        self.key = key
