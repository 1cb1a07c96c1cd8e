"""Task options, defined once: each option's name, type, check and default live in ``OPTIONS``.

Every spelling takes its keywords from this table, with ``None`` meaning "not given":
``App.task``, ``App.register`` / ``taskit.handlers.handler_task`` and ``App.remote`` take the
task options (a task's fixed ones, ``TaskOptions``); ``Task.options`` and
``JobService.create_job`` take the per-call ones (``CallOptions``). Their signatures are spelled
out for type checkers and IDEs, and a test compares each with this table, so they cannot drift.

``retry_on`` / ``dont_retry_on`` choose which raised exceptions are retried (the worker's decision
is ``taskit.execution.retries``; guide: "Choosing what to retry").

A bad value raises ``ValueError`` or ``TypeError`` naming the option, the same error from every
spelling: the check runs in ``TaskOptions.__post_init__`` (when a task is decorated, registered
or made remote) and ``CallOptions.__post_init__`` (when ``Task.options`` is called), never on
the enqueue path.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from taskit.backoff import BackoffPolicy, as_policy
from taskit.config import MAX_COUNT, MAX_SECONDS, Settings
from taskit.dedup import DedupPolicy, check_dedup
from taskit.errors import Fail, Retry
from taskit.job import Job
from taskit.limiting import Limit, LimitUse, check_limits

__all__ = [
    "CALL_OPTIONS",
    "OPTIONS",
    "TASK_OPTIONS",
    "CallOptions",
    "ExceptionTypes",
    "FairBy",
    "OnFailure",
    "Option",
    "TaskOptions",
    "check_name",
    "given_options",
    "resolve_options",
    "result_ttl_seconds",
    "task_options",
]

#: ``fair_by``: the name of the argument whose value is a job's fairness group, or a function
#: called with the bound arguments as keywords that returns it (flow control: "Fair
#: queues").
FairBy = str | Callable[..., str | int]
#: ``on_failure(job, error)``: called on every failure of the task, sync or async.
OnFailure = Callable[[Job, BaseException], "Awaitable[None] | None"]
#: ``retry_on`` / ``dont_retry_on``: an exception class or a tuple of them, as ``except`` takes.
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


def _queue(value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"queue must be a non-empty string, got {value!r}")


def _count(what: str, low: int) -> Callable[[object], None]:
    """A count or priority: an int from ``low`` to ``MAX_COUNT``, as the settings take (past
    64 bits a job could not even be encoded; past 2**53 Redis would rank priorities as floats)."""

    def check(value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{what} must be an int, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{what} must be >= {low}, got {value}")
        if value > MAX_COUNT:
            raise ValueError(f"{what} must be <= {MAX_COUNT}, got {value}")

    return check


def _timeout(value: object) -> None:
    """Finite and at most ``MAX_SECONDS`` (ten years), as ``TASKIT_JOB_TIMEOUT``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_SECONDS  # NaN and inf fail too
    ):
        raise ValueError(
            f"timeout must be a number of seconds > 0 and at most ten years, got {value!r}"
        )


def _backoff(value: object) -> None:
    as_policy(value)  # type: ignore[arg-type]  # raises the named error; the policy is made later


def _on_failure(value: object) -> None:
    if not callable(value):
        raise TypeError("on_failure must be a callable (job, error) -> None")


def _exception_types(what: str) -> Callable[[object], None]:
    """An exception class or a tuple of them (``()``: none). ``Retry`` and ``Fail`` are refused:
    raising them already says whether to retry, whatever the filters say."""

    def check(value: object) -> None:
        classes = value if isinstance(value, tuple) else (value,)
        for cls in classes:
            if not isinstance(cls, type) or not issubclass(cls, BaseException):
                raise TypeError(
                    f"{what} must be an exception class or a tuple of them, got {cls!r}"
                    + ("" if isinstance(value, tuple | type) else " (write a tuple)")
                )
            if issubclass(cls, Retry | Fail):
                raise ValueError(
                    f"{what} cannot name {cls.__name__}: raising Retry or Fail already says "
                    "whether the job is retried"
                )

    return check


def _bool(what: str) -> Callable[[object], None]:
    def check(value: object) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{what} must be a bool, got {type(value).__name__}")

    return check


def check_name(value: object) -> None:
    """A task name: a non-empty string (``ValueError`` otherwise)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"a task name must be a non-empty string, got {value!r}")


def _job_id(value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"job_id must be a non-empty string, got {value!r}")


def _metadata(value: object) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(value).__name__}")


def _created_by(value: object) -> None:
    if not isinstance(value, str | uuid.UUID):
        raise TypeError(f"created_by must be a string or UUID, got {type(value).__name__}")


def _expires(value: object) -> None:
    """Seconds from the enqueue (finite, > 0, at most ``MAX_SECONDS``) or an aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"expires must be timezone-aware, got {value!r}")
    elif (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_SECONDS  # NaN and inf fail too
    ):
        raise ValueError(
            "expires must be a number of seconds > 0 and at most ten years, or an aware "
            f"datetime, got {value!r}"
        )


def _result_ttl(value: object) -> None:
    """Seconds (or a ``timedelta``) from 0 to ``MAX_SECONDS``: how long a finished job's record
    is kept. 0 keeps nothing past the settle. Negative values (RQ's -1, "for ever"), NaN and
    inf are refused: a broker keeps nothing for ever (ten years is the longest)."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= MAX_SECONDS  # NaN and inf fail too
    ):
        raise ValueError(
            "result_ttl must be a number of seconds (or a timedelta) >= 0 and at most ten "
            f"years, got {value!r} (there is no 'keep for ever': give a long TTL)"
        )


def _fair_by(value: object) -> None:
    if isinstance(value, str):
        if not value.isidentifier():
            raise ValueError(f"fair_by must name an argument (an identifier), got {value!r}")
    elif not callable(value):
        raise TypeError(
            "fair_by must be an argument name or a function of the arguments, got "
            f"{type(value).__name__}"
        )


def _depends_on(value: object) -> None:
    """The jobs a call waits for: a list or tuple of ``Job`` s or job ids (``[]``: none)."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"depends_on must be a list of jobs or job ids, got {type(value).__name__}")
    for item in value:
        if isinstance(item, Job):
            continue
        if not isinstance(item, str) or not item:
            raise TypeError(f"depends_on must name jobs (a Job or a job id), got {item!r}")


def result_ttl_seconds(value: float | timedelta | None) -> float | None:
    """A checked ``result_ttl`` as the float seconds a job carries (None stays None)."""
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True)
class Option:
    """One option. ``annotation``: its type as every spelling writes it (each adds ``| None``,
    default ``None``); ``check``: raises ``ValueError``/``TypeError`` naming the option for a
    bad value (never called with ``None``); ``task``/``call``: a fixed option of a task, a
    per-call one, or both; ``default``: what an unset task option becomes for a new task."""

    annotation: str
    check: Callable[[object], None]
    task: bool
    call: bool
    default: Callable[[Settings], Any] = lambda settings: None


#: Every option, in the order the spellings list them.
OPTIONS: Mapping[str, Option] = MappingProxyType(
    {
        "queue": Option("str", _queue, True, True, lambda s: s.default_queue),
        "priority": Option("int", _count("priority", -MAX_COUNT), True, True, lambda s: 0),
        "max_retries": Option("int", _count("max_retries", 0), True, True, lambda s: s.max_retries),
        "backoff": Option("Backoff", _backoff, True, False, lambda s: s.backoff),
        "timeout": Option("float", _timeout, True, True, lambda s: s.job_timeout),
        "on_failure": Option("OnFailure", _on_failure, True, False),
        "retry_on": Option("ExceptionTypes", _exception_types("retry_on"), True, False),
        "dont_retry_on": Option("ExceptionTypes", _exception_types("dont_retry_on"), True, False),
        "validate": Option("bool", _bool("validate"), True, True, lambda s: True),
        "job_id": Option("str", _job_id, False, True),
        "metadata": Option("Mapping[str, Any]", _metadata, False, True),
        "created_by": Option("str | uuid.UUID", _created_by, False, True),
        "expires": Option("float | datetime", _expires, False, True),
        "result_ttl": Option("float | timedelta", _result_ttl, True, True),
        "fair_by": Option("FairBy", _fair_by, True, False),
        "dedup": Option("DedupPolicy", check_dedup, True, True),
        "limits": Option("Sequence[Limit | LimitUse]", check_limits, True, True),
        "depends_on": Option("Sequence[Job | str]", _depends_on, False, True),
    }
)
#: The names of a task's fixed options (``App.task``; ``register`` and ``remote`` omit
#: ``on_failure``, see there) and of the per-call ones (``Task.options``, ``create_job``).
TASK_OPTIONS = tuple(name for name, option in OPTIONS.items() if option.task)
CALL_OPTIONS = tuple(name for name, option in OPTIONS.items() if option.call)
#: (name, check) of each per-call option, for ``CallOptions`` (built on every ``Task.options``).
_CALL_CHECKS = tuple((name, OPTIONS[name].check) for name in CALL_OPTIONS)
#: Task options whose resolved value may be ``None``: no timeout, no hook, no exception filter.
_NULLABLE = (
    "timeout", "on_failure", "retry_on", "dont_retry_on", "result_ttl", "fair_by", "dedup",
    "limits",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """A task's fixed options, every one resolved (see ``resolve_options``) and checked here."""

    name: str
    queue: str
    priority: int
    max_retries: int
    backoff: BackoffPolicy
    timeout: float | None
    on_failure: OnFailure | None
    #: Retry only these exceptions (``None``: every one); others fail the job at once.
    retry_on: ExceptionTypes | None = None
    #: Never retry these (wins over ``retry_on``): the job fails at once.
    dont_retry_on: ExceptionTypes | None = None
    #: Check argument types at enqueue (``@app.task(validate=False)`` turns it off).
    validate: bool = True
    #: Seconds its finished jobs stay readable (``None``: the broker's ``result_ttl``).
    result_ttl: float | timedelta | None = None
    #: What gives each job its fairness group (``Job.group``); ``None``: its jobs have none.
    fair_by: FairBy | None = None
    #: Its dedup window (``taskit.dedup``: ``Throttle`` or ``Debounce``); None: none.
    dedup: DedupPolicy | None = None
    #: The limits its jobs need (``taskit.limiting``); ``None``: none.
    limits: Sequence[Limit | LimitUse] | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        for name in TASK_OPTIONS:
            value = getattr(self, name)
            if name == "backoff":  # already a policy here (given_options made it one)
                if not callable(value):
                    raise TypeError(f"backoff must be a policy (a callable), got {value!r}")
            elif value is not None or name not in _NULLABLE:
                OPTIONS[name].check(value)
        if self.limits is not None:  # a copy: a later change to the caller's list changes nothing
            object.__setattr__(self, "limits", tuple(self.limits))


@dataclass(frozen=True, kw_only=True)
class CallOptions:
    """Per-call options (``Task.options``); ``None``: the task's own. Checked when built;
    ``metadata`` is copied, so a later change to the caller's mapping changes no job."""

    queue: str | None = None
    priority: int | None = None
    max_retries: int | None = None
    timeout: float | None = None
    validate: bool | None = None
    job_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_by: str | None = None
    #: Drop the job if no worker starts it by then: seconds from the enqueue, or a datetime.
    expires: float | datetime | None = None
    #: Seconds the finished job stays readable (``None``: the task's, else the broker's).
    result_ttl: float | timedelta | None = None
    #: A dedup window for these calls (``None``: the task's own, if any).
    dedup: DedupPolicy | None = None
    #: The limits these jobs need instead of the task's (``[]``: none).
    limits: Sequence[Limit | LimitUse] | None = None
    #: The jobs (or ids) these jobs wait for: DEFERRED until each has ended (``taskit.canvas``).
    depends_on: Sequence[Job | str] | None = None

    def __post_init__(self) -> None:
        for name, check in _CALL_CHECKS:
            value = getattr(self, name)
            if value is not None:
                check(value)
        object.__setattr__(self, "metadata", dict(self.metadata))
        if self.limits is not None:
            object.__setattr__(self, "limits", tuple(self.limits))
        if self.depends_on is not None:
            object.__setattr__(self, "depends_on", tuple(self.depends_on))


def given_options(**given: Any) -> dict[str, Any]:
    """The task options actually given (``None`` dropped), checked, ``backoff`` made a policy.
    Raises ``TypeError`` for a name that is not a task option."""
    changes: dict[str, Any] = {}
    for name, value in given.items():
        option = OPTIONS.get(name)
        if option is None or not option.task:
            raise TypeError(f"{name!r} is not a task option")
        if value is not None:
            option.check(value)
            changes[name] = as_policy(value) if name == "backoff" else value
    return changes


def task_options(settings: Settings, name: str, changes: Mapping[str, Any]) -> TaskOptions:
    """A new task's ``TaskOptions``: ``changes`` (from ``given_options``; a key present with
    ``None`` stays ``None``), every other option from ``settings`` (queue, retries, backoff,
    timeout) or the table's default."""
    values = dict(changes)
    for option_name in TASK_OPTIONS:
        if option_name not in values:
            default = OPTIONS[option_name].default(settings)
            values[option_name] = as_policy(default) if option_name == "backoff" else default
    return TaskOptions(name=name, **values)


def resolve_options(settings: Settings, name: str, **given: Any) -> TaskOptions:
    """``task_options`` of the options ``given`` (``None``: unset). Raises ``ValueError`` or
    ``TypeError`` naming a bad option."""
    return task_options(settings, name, given_options(**given))
