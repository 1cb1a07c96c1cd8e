"""Tasks: a function with its options (``taskit.options``), and the typed ways to enqueue it.

A task stores its jobs through a ``taskit.producer.Producer`` (``App.task`` gives it the App's),
never through the App itself, so a task can be built and used without one.

``Task[P, R]`` keeps the function's parameters ``P``, so a type checker checks
``task.enqueue(...)`` exactly as it checks a call of the function. When the job is prepared the
arguments are bound against the signature and checked against the annotations (a wrong call, or a
value that would not reach the handler as passed, raises ``TypeError`` naming the argument; see
``taskit._arguments``), then encoded with msgspec (``SerializationError`` naming the argument).
Either way nothing is enqueued. ``validate=False`` (on the task or per call) skips the type check.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import msgspec

from taskit._arguments import ArgumentTypes
from taskit._canvas_nodes import hints_of
from taskit._canvas_typing import CallMaker, MapMaker, StepMaker
from taskit._depends import waiting_for
from taskit.dedup import Dedup, DedupPolicy, dedup_of
from taskit.fairness import group_of
from taskit.job import Job, decode_arguments, encode_arguments, new_job_id
from taskit.limiting import Limit, LimitPlan, LimitUse
from taskit.options import CallOptions, OnFailure, TaskOptions, result_ttl_seconds
from taskit.producer import Producer

# TaskOptions and OnFailure are defined in taskit.options; importable from here as before.
__all__ = ["OnFailure", "Task", "TaskOptions", "TaskVariant", "When", "scheduled"]

P = ParamSpec("P")
R = TypeVar("R")

#: When a scheduled job becomes due: an aware datetime, or a delay (timedelta or seconds).
When = datetime | timedelta | float | int


class TaskVariant(Generic[P, R]):
    """A task with per-call options (from ``Task.options``): prepares and enqueues jobs."""

    __slots__ = ("_limits", "_overrides", "_shape", "_task")

    def __init__(self, task: Task[P, R], overrides: CallOptions) -> None:
        self._task = task
        self._overrides = overrides
        # The plan that gives its jobs their limit keys; None: no limits, nothing to compute.
        self._limits: LimitPlan | None = (
            task._limits if overrides.limits is None else task.limit_plan(overrides.limits)
        )
        self._shape: _Shape | None = None  # what every job of it shares, on first use

    @property
    def task(self) -> Task[P, R]:
        """The task these options apply to (itself, for a ``Task``)."""
        return self._task

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Build (but do not enqueue) a job for this call; for ``App.enqueue_many``.
        ``ValueError`` with ``depends_on`` set: finding the parents' workflow takes the broker
        (use ``enqueue`` or ``schedule``)."""
        if self._overrides.depends_on:
            raise ValueError(
                f"task {self._task.name!r}: a job with depends_on cannot be prepared alone (its "
                "parents' workflow is read from the broker): use enqueue() or schedule()"
            )
        return self._prepare(args, kwargs)

    def _prepare(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        task = self._task
        shape = self._shape_now()
        if kwargs or len(args) != task._plain_arity:  # plain positional calls bind by count
            task.check_call(args, kwargs, validate=shape.validate)
        elif shape.validate and task.fn is not None:
            (task._types or task.argument_types()).check_positional(task.positional_names, args)
        return self._job(args, kwargs, shape=shape)

    def _shape_now(self) -> _Shape:
        """The ``_Shape`` of this variant's jobs (made anew if the task's options changed)."""
        shape = self._shape
        if shape is None or shape.opts is not self._task.opts:
            shape = self._shape = _Shape(self._task.opts, self._overrides, self._limits)
        return shape

    def _job(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        keyed: tuple[Any, ...] | None = None,
        shape: _Shape | None = None,
    ) -> Job:
        """The job of checked arguments, every option applied. ``keyed``: the positional
        arguments its fairness group, dedup and limit keys are read from, when not ``args`` (a
        step's, with its fed argument's stand-in first); ``shape``: ``_shape_now()``'s, when
        the caller has it."""
        if shape is None:
            shape = self._shape_now()
        payload = encode_arguments(args, kwargs, self._task.positional_names)
        if shape.plain:  # nothing read from the arguments, nothing per call but id and time
            return _replace(shape.template, id=new_job_id(), payload=payload,
                            created_at=datetime.now(UTC), metadata={})  # fmt: skip
        task, o = self._task, self._overrides
        opts = task.opts
        created_at = datetime.now(UTC)
        key_args = args if keyed is None else keyed
        group = (
            None
            if opts.fair_by is None
            else group_of(opts.fair_by, task.bound_by, key_args, kwargs)
        )
        return _replace(
            shape.template,
            id=new_job_id() if o.job_id is None else o.job_id,
            payload=payload,
            created_at=created_at,
            metadata=dict(o.metadata) if o.metadata else {},
            expires_at=_expires_at(o.expires, created_at),
            group=group,
            dedup=None if shape.dedup is None else task.dedup_of(shape.dedup, key_args, kwargs),
            limits=() if self._limits is None else self._limits.keys(key_args, kwargs),
        )

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue a job to run as soon as a worker is free; returns it as stored."""
        job = self._prepare(args, kwargs)
        if self._overrides.depends_on:
            job = await self._parents(job)
        return (await self._task.producer.submit([job]))[0]

    async def schedule(self, when: When, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue a job to run at ``when`` (aware datetime) or after it (delay), never before."""
        job, delay = scheduled(await self._parents(self._prepare(args, kwargs)), when)
        return (await self._task.producer.submit([job], [delay]))[0]

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """``enqueue`` for code without an event loop (a Flask/Django view, a script)."""
        job = self._prepare(args, kwargs)
        if self._overrides.depends_on:
            job = self._parents_sync(job)
        return self._task.producer.submit_sync([job])[0]

    def schedule_sync(self, when: When, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """``schedule`` for code without an event loop."""
        job, delay = scheduled(self._parents_sync(self._prepare(args, kwargs)), when)
        return self._task.producer.submit_sync([job], [delay])[0]

    async def _parents(self, job: Job) -> Job:
        """``job`` waiting for the ``depends_on`` jobs, if any (``taskit._depends``)."""
        parents = self._overrides.depends_on
        if not parents:
            return job
        return await waiting_for(self._task.producer.broker, job, parents)

    def _parents_sync(self, job: Job) -> Job:
        if not self._overrides.depends_on:
            return job
        return self._task.producer.run_sync(self._parents, job)

    # -- workflows (taskit.canvas) --------------------------------------------------------------
    if TYPE_CHECKING:  # what the typed makers below read the task's signature from

        def _typed(self) -> Callable[P, R]: ...

    #: ``task.s(*args, **kwargs)``: this call with all its arguments, as a workflow node
    #: (``taskit.canvas.Call``): enqueue it in a ``chain``, ``group`` or ``chord``, or alone.
    #: Checked now as ``enqueue`` checks its arguments.
    s = CallMaker()

    #: ``task.step(*rest)``: a node whose first argument is the previous node's result
    #: (``taskit.canvas.Step``); the rest are checked now. ``TypeError`` for a task with no
    #: positional parameter to feed.
    step = StepMaker()
    #: ``task.map(arg_sets, concurrency=None)``: a ``Group`` of one call per argument tuple
    #: (``taskit._canvas_calls.map_of``).
    map = MapMaker()

    @property
    def overrides(self) -> CallOptions:
        """The per-call options (``Task.options``) this variant applies."""
        return self._overrides

    def checked_job(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        """``prepare(*args, **kwargs)`` without its ``depends_on`` check (a workflow node)."""
        return self._prepare(args, kwargs)

    def job_of(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], keyed: tuple[Any, ...] | None = None
    ) -> Job:
        """The job of arguments already checked (see ``_job``)."""
        return self._job(args, kwargs, keyed)


class Task(TaskVariant[P, R]):
    """A task: its function (``None`` for a handle to a task registered elsewhere, see
    ``App.remote``), its resolved options, and the ``Producer`` its jobs are stored through.
    Calling it calls the function directly, in this process."""

    def __init__(self, producer: Producer, fn: Callable[P, R] | None, opts: TaskOptions) -> None:
        self.producer = producer
        self.fn = fn
        self.opts = opts
        self.signature = inspect.signature(fn) if fn is not None else None
        self._limits = self.limit_plan(opts.limits or ())
        super().__init__(self, _NO_OVERRIDES)
        self.is_async = fn is not None and _is_async(fn)
        self.positional_names: tuple[str, ...] = tuple(
            p.name
            for p in (self.signature.parameters.values() if self.signature else ())
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
        self._types: ArgumentTypes | None = None
        self._hints: tuple[Any, Any] | None = None  # (returns, first parameter), on first use
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

    @property
    def bound_by(self) -> inspect.Signature | None:
        """The signature a call's arguments bind to for ``fair_by`` (``None``: keywords only,
        as for a task not registered here)."""
        return self.signature

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
        max_retries: int | None = None,
        timeout: float | None = None,
        validate: bool | None = None,
        job_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_by: str | uuid.UUID | None = None,
        expires: float | datetime | None = None,
        result_ttl: float | timedelta | None = None,
        dedup: DedupPolicy | None = None,
        limits: Sequence[Limit | LimitUse] | None = None,
        depends_on: Sequence[Job | str] | None = None,
    ) -> TaskVariant[P, R]:
        """This task with per-call options (``taskit.options.CALL_OPTIONS``); unset ones keep
        the task's own. ``validate=False`` skips the argument type check for these calls (the
        signature is still bound). ``created_by`` is kept as a string. A bad option raises
        ``ValueError`` or ``TypeError`` naming it. ``expires`` (seconds from the enqueue, or an
        aware datetime): a job no worker started by then is dropped, never run (guide: "Job
        expiry"). ``result_ttl`` (seconds or a timedelta; 0: none): how long the finished job
        stays readable, instead of the task's or the broker's (guide: "Result retention per
        job"). ``dedup`` (``Throttle`` or ``Debounce``): a dedup window for these calls (flow
        control: "Dedup windows"). ``limits`` replaces the task's limits for these calls
        (``[]``: none; flow control: "Limits"). ``depends_on`` (jobs or job ids): the job
        waits, DEFERRED, until each has ended, and joins their workflow (workflows guide:
        "depends_on"); ``prepare`` refuses it."""
        if isinstance(created_by, uuid.UUID):
            created_by = str(created_by)
        overrides = CallOptions(
            queue=queue, priority=priority, max_retries=max_retries, timeout=timeout,
            validate=validate, job_id=job_id, metadata={} if metadata is None else metadata,
            created_by=created_by, expires=expires, result_ttl=result_ttl, dedup=dedup,
            limits=limits, depends_on=depends_on,
        )  # fmt: skip
        return TaskVariant(self, overrides)

    def hints(self) -> tuple[Any, Any]:
        """(return annotation, first parameter's annotation), resolved once; ``Any`` for each
        that is absent or unknown (``taskit._canvas_nodes.hints_of``): what a workflow checks
        a step's fed value against."""
        if self._hints is None:
            self._hints = hints_of(self.fn)
        return self._hints

    def limit_plan(self, uses: Sequence[Limit | LimitUse]) -> LimitPlan | None:
        """How this task's jobs get their limit keys from ``uses`` (None: no limits). Raises
        ``ValueError`` for a key argument the function does not take."""
        return LimitPlan(self.name, uses, self.signature) if uses else None

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

    def dedup_of(self, policy: DedupPolicy, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Dedup:
        """The dedup window a job of these arguments carries (``taskit.dedup``): its key from
        the arguments by name, defaults applied (a remote task's: its keyword arguments only).
        ``TypeError``/``ValueError`` naming the problem (see ``dedup_of``)."""
        if self.signature is None:
            return dedup_of(policy, self.name, kwargs)
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if self.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            else:
                arguments[name] = value
        return dedup_of(policy, self.name, arguments)

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


def scheduled(job: Job, when: When) -> tuple[Job, float]:
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


#: A task's own calls: no per-call option.
_NO_OVERRIDES = CallOptions()


class _Shape:
    """What every job of one variant shares, resolved once from the task's options ``opts``
    and the call's overrides (both frozen): a ``template`` job holding the fields that do not
    change per call (task, queue, priority, retries, timeout, creator, result TTL), whether to
    check argument types, the dedup policy, and whether a job is ``plain`` (nothing made per
    call but its id, time and payload: no per-call id, metadata, expiry, fairness group, dedup
    window or limit). Why: reading and merging a dozen options per call, and building the job
    from keywords, was a third of preparing a job; a copy of the template with the per-call
    fields replaced is one C call."""

    __slots__ = ("dedup", "opts", "plain", "template", "validate")

    def __init__(self, opts: TaskOptions, o: CallOptions, limits: LimitPlan | None) -> None:
        self.opts = opts
        self.validate = opts.validate if o.validate is None else o.validate
        self.dedup = opts.dedup if o.dedup is None else o.dedup
        self.template = Job(
            id="",
            task=opts.name,
            queue=opts.queue if o.queue is None else o.queue,
            payload=msgspec.Raw(b""),
            created_at=_EPOCH,
            priority=opts.priority if o.priority is None else o.priority,
            max_retries=opts.max_retries if o.max_retries is None else o.max_retries,
            timeout=opts.timeout if o.timeout is None else o.timeout,
            created_by=o.created_by,
            result_ttl=result_ttl_seconds(
                opts.result_ttl if o.result_ttl is None else o.result_ttl
            ),
        )
        self.plain = (
            o.job_id is None
            and not o.metadata
            and o.expires is None
            and opts.fair_by is None
            and self.dedup is None
            and limits is None
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_replace = msgspec.structs.replace


def _expires_at(expires: float | datetime | None, created_at: datetime) -> datetime | None:
    """The job's ``expires_at``: ``expires`` seconds after ``created_at``, or the datetime in
    UTC."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        return expires.astimezone(UTC)
    return created_at + timedelta(seconds=expires)
