"""Tasks: a function registered on an App, and the typed ways to enqueue it.

``Task[P, R]`` keeps the function's parameters ``P``, so a type checker checks
``task.enqueue(...)`` exactly as it checks a call of the function. When the job is prepared the
arguments are bound against the signature and checked against the annotations (a wrong call, or a
value that would not reach the handler as passed, raises ``TypeError`` naming the argument; see
``taskit._arguments``), then encoded with msgspec (``SerializationError`` naming the argument).
Either way nothing is enqueued. ``validate=False`` (on the task or per call) skips the type check.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import msgspec

from taskit._arguments import ArgumentTypes
from taskit.backoff import BackoffPolicy
from taskit.config import MAX_COUNT, MAX_SECONDS
from taskit.job import Job, decode_arguments, encode_arguments, new_job_id

if TYPE_CHECKING:
    from taskit.app import App

__all__ = ["OnFailure", "Task", "TaskOptions", "TaskVariant", "When"]

P = ParamSpec("P")
R = TypeVar("R")

#: When a scheduled job becomes due: an aware datetime, or a delay (timedelta or seconds).
When = datetime | timedelta | float | int
#: ``on_failure(job, error)``: called on every failure of the task, sync or async.
OnFailure = Callable[[Job, BaseException], "Awaitable[None] | None"]


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """A task's fixed options (see ``App.task``)."""

    name: str
    queue: str
    priority: int
    max_retries: int
    backoff: BackoffPolicy
    timeout: float | None
    on_failure: OnFailure | None
    #: Check argument types at enqueue (``@app.task(validate=False)`` turns it off).
    validate: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.validate, bool):
            raise TypeError(f"validate must be a bool, got {type(self.validate).__name__}")


@dataclass(frozen=True, kw_only=True)
class _Overrides:
    queue: str | None = None
    priority: int | None = None
    job_id: str | None = None
    max_retries: int | None = None
    timeout: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_by: str | None = None
    validate: bool | None = None


class TaskVariant(Generic[P, R]):
    """A task with per-call options (from ``Task.options``): prepares and enqueues jobs."""

    __slots__ = ("_overrides", "_task")

    def __init__(self, task: Task[P, R], overrides: _Overrides) -> None:
        self._task = task
        self._overrides = overrides

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Build (but do not enqueue) a job for this call; for ``App.enqueue_many``."""
        task, o = self._task, self._overrides
        validate = task.opts.validate if o.validate is None else o.validate
        if kwargs or len(args) != task._plain_arity:  # plain positional calls bind by count
            task.check_call(args, kwargs, validate=validate)
        elif validate and task.fn is not None:
            (task._types or task.argument_types()).check_positional(task.positional_names, args)
        opts = task.opts
        return Job(
            id=new_job_id() if o.job_id is None else o.job_id,
            task=opts.name,
            queue=opts.queue if o.queue is None else o.queue,
            payload=encode_arguments(args, kwargs, task.positional_names),
            created_at=datetime.now(UTC),
            priority=opts.priority if o.priority is None else o.priority,
            max_retries=opts.max_retries if o.max_retries is None else o.max_retries,
            timeout=opts.timeout if o.timeout is None else o.timeout,
            metadata=dict(o.metadata) if o.metadata else {},
            created_by=o.created_by,
        )

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue a job to run as soon as a worker is free; returns it as stored."""
        job = self.prepare(*args, **kwargs)
        return (await self._task.app._submit([job], None))[0]

    async def schedule(self, when: When, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue a job to run at ``when`` (aware datetime) or after it (delay), never before."""
        job, delay = _scheduled(self.prepare(*args, **kwargs), when)
        return (await self._task.app._submit([job], [delay]))[0]

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """``enqueue`` for code without an event loop (a Flask/Django view, a script)."""
        job = self.prepare(*args, **kwargs)
        return self._task.app.enqueue_many_sync([job])[0]

    def schedule_sync(self, when: When, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """``schedule`` for code without an event loop."""
        job, delay = _scheduled(self.prepare(*args, **kwargs), when)
        return self._task.app._submit_sync([job], [delay])[0]


class Task(TaskVariant[P, R]):
    """A registered task. Calling it calls the function directly, in this process."""

    def __init__(self, app: App, fn: Callable[P, R] | None, opts: TaskOptions) -> None:
        super().__init__(self, _Overrides())
        self.app = app
        self.fn = fn
        self.opts = opts
        self.signature = inspect.signature(fn) if fn is not None else None
        self.is_async = fn is not None and _is_async(fn)
        self.positional_names: tuple[str, ...] = tuple(
            p.name
            for p in (self.signature.parameters.values() if self.signature else ())
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
        self._types: ArgumentTypes | None = None
        # Number of parameters when every one is a plain positional one without a default (the
        # payload then binds by position alone); -1 otherwise.
        params = list(self.signature.parameters.values()) if self.signature else []
        plain = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
        self._plain_arity = len(params) if plain else -1
        if fn is not None:
            self.__doc__ = fn.__doc__
            self.__wrapped__ = fn

    @property
    def name(self) -> str:
        return self.opts.name

    def __repr__(self) -> str:
        return f"<Task {self.opts.name!r} queue={self.opts.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.fn is None:
            raise TypeError(f"task {self.name!r} is not registered here; it can only be enqueued")
        return self.fn(*args, **kwargs)

    def options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        job_id: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_by: str | None = None,
        validate: bool | None = None,
    ) -> TaskVariant[P, R]:
        """This task with per-call options; unset ones keep the task's own. ``validate=False``
        skips the argument type check for these calls (the signature is still bound)."""
        _check_queue(queue, "queue")
        _check_int(priority, "priority")
        _check_int(max_retries, "max_retries", low=0)
        _check_timeout(timeout)
        if job_id is not None and (not isinstance(job_id, str) or not job_id):
            raise ValueError(f"job_id must be a non-empty string, got {job_id!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
        if created_by is not None and not isinstance(created_by, str):
            raise TypeError(f"created_by must be a string, got {type(created_by).__name__}")
        if validate is not None and not isinstance(validate, bool):
            raise TypeError(f"validate must be a bool, got {type(validate).__name__}")
        return TaskVariant(
            self,
            _Overrides(
                queue=queue, priority=priority, job_id=job_id, max_retries=max_retries,
                timeout=timeout, metadata=dict(metadata or {}), created_by=created_by,
                validate=validate,
            ),
        )  # fmt: skip

    def check_call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, validate: bool = True
    ) -> None:
        """Raise ``TypeError`` naming the problem if ``fn(*args, **kwargs)`` would not bind or
        (``validate``) an argument would not reach the handler as passed."""
        if self.signature is None:
            return
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc}") from None
        if validate:
            self.argument_types().check_bound(bound.arguments)

    def load_arguments(self, job: Job) -> tuple[list[Any], dict[str, Any]]:
        """Decode a job's payload and convert each argument to its annotated type.

        Raises ``SerializationError`` (bytes malformed), ``TypeError`` (does not bind) or
        ``msgspec.ValidationError`` (a value does not fit its annotation), each naming the problem.
        """
        args, kwargs = decode_arguments(job.payload)
        return self.convert_arguments(args, kwargs)

    def convert_arguments(
        self, args: list[Any], kwargs: dict[str, Any], *, from_json: bool = False
    ) -> tuple[list[Any], dict[str, Any]]:
        """Plain values (as msgpack decoded them) converted to the annotated types, as the worker
        does before calling the handler (``args`` is converted in place); ``from_json``: values
        from JSON (``taskit enqueue``), converted as msgspec converts builtins. Raises as
        ``load_arguments``."""
        if self.signature is None:
            return args, kwargs
        arrivals = self.argument_types().arrivals
        if not kwargs and len(args) == self._plain_arity:  # the common case, without bind()
            for i, name in enumerate(self.positional_names):
                arrival = arrivals.get(name)
                if arrival is not None:
                    args[i] = arrival.named(name, args[i], from_json=from_json)
            return args, kwargs
        bound = self.signature.bind(*args, **kwargs).arguments
        for name, value in bound.items():
            arrival = arrivals.get(name)
            if arrival is not None:
                bound[name] = arrival.named(name, value, from_json=from_json)
        return _reshape(self.signature, bound, len(args), kwargs)

    def argument_types(self) -> ArgumentTypes:
        """The parameters' types, resolved on first use (``SerializationError`` if an
        annotation names something undefined)."""
        if self._types is None:
            assert self.fn is not None
            assert self.signature is not None
            self._types = ArgumentTypes(self.name, self.fn, self.signature)
        return self._types


def _reshape(
    sig: inspect.Signature, bound: dict[str, Any], n_args: int, kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Converted ``bound`` arguments, positional and keyword as they were passed."""
    args: list[Any] = []
    for param in sig.parameters.values():
        if len(args) >= n_args:
            break
        if param.kind is param.VAR_POSITIONAL:
            args += bound[param.name]
        elif param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            args.append(bound[param.name])
    extra = next((p.name for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD), "")
    collected = bound.get(extra, {})  # the keywords that **kwargs took
    return args, {k: bound[k] if k in bound and k != extra else collected[k] for k in kwargs}


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - async callable objects count too
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _scheduled(job: Job, when: When) -> tuple[Job, float]:
    """The job and the delay to enqueue it with, for ``schedule(when, ...)``."""
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                "schedule() needs an aware datetime (e.g. datetime.now(UTC) + ...); got a naive one"
            )
        try:
            at = when.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 in another zone: past the range in UTC
            raise ValueError(
                f"schedule() time {when!r} is outside the datetime range in UTC"
            ) from None
        return msgspec.structs.replace(job, scheduled_at=at), 0.0
    if isinstance(when, timedelta):
        seconds = when.total_seconds()
    elif isinstance(when, int | float) and not isinstance(when, bool):
        # an int past float range (10**400) is as far off as inf
        seconds = float(when) if isinstance(when, float) or when < 2**1000 else float("inf")
    else:
        raise TypeError(
            f"schedule() takes an aware datetime, a timedelta or seconds; got {type(when).__name__}"
        )
    if not seconds >= 0:
        raise ValueError(f"schedule() delay must be >= 0 seconds, got {when!r}")
    try:  # infinite or past year 9999: the broker could not store the due time
        datetime.now(UTC) + timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"schedule() delay {when!r} is too far in the future") from None
    return job, seconds


def _check_queue(queue: str | None, what: str) -> None:
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        raise ValueError(f"{what} must be a non-empty string, got {queue!r}")


def _check_int(value: int | None, what: str, *, low: int = -MAX_COUNT) -> None:
    """A count or priority: an int from ``low`` to ``MAX_COUNT``, as the settings take (past
    64 bits a job could not even be encoded; past 2**53 Redis would rank priorities as floats)."""
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{what} must be >= {low}, got {value}")
    if value > MAX_COUNT:
        raise ValueError(f"{what} must be <= {MAX_COUNT}, got {value}")


def _check_timeout(timeout: float | None) -> None:
    """Finite and at most ``MAX_SECONDS`` (ten years), as ``TASKIT_JOB_TIMEOUT``; None: none."""
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_SECONDS  # NaN and inf fail too
    ):
        raise ValueError(
            f"timeout must be a number of seconds > 0 and at most ten years, got {timeout!r}"
        )


def _check_seconds(value: float, what: str, *, positive: bool) -> None:
    """``value`` must be a finite number of seconds (not a bool), > 0 or >= 0."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (value > 0 if positive else value >= 0) or value == float("inf"):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what} must be a finite number of seconds {bound}, got {value!r}")
