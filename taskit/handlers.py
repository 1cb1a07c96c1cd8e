"""Class-based job handlers, for teams that prefer a class with injected dependencies to a function.

    class SendEmail(JobHandler):
        job_type = "email.send"

        def __init__(self, mailer: Mailer) -> None:      # dependencies come in here
            self.mailer = mailer

        async def handle(self, job: Job) -> JobResult:
            payload = job.kwargs                          # the JSON-like payload, a dict
            await self.mailer.send(payload["to"], payload["subject"])
            return JobResult(success=True, value={"to": payload["to"]})

    send_email = app.register(SendEmail(mailer), max_retries=5)
    await send_email.enqueue(to="ada@example.com", subject="Hi")
    await JobService(app).create_job("email.send", {"to": "ada@example.com", "subject": "Hi"})

A registered handler is an ordinary task named ``job_type`` and runs through the same executor as a
decorated function, so the semantics are the same: a raised exception (or a timeout) is retried
with the task's backoff until ``max_retries`` is spent, then the job is dead-lettered (one that
``retry_on`` / ``dont_retry_on`` leave out fails the job at once); a returned
``JobResult(success=False)`` or a raised ``Fail`` fails the job at once, without retry;
``on_failure`` runs on every failure, retried or not, and an exception inside it is logged and
changes nothing.

**The payload.** A handler job carries no positional arguments, only keywords: the payload is a
mapping of string keys to values msgpack can encode, and the handler reads it back, decoded to
plain types (dict, list, str, int, float, bool, None, bytes, datetime), as ``job.kwargs``. Convert
it to a typed object with ``msgspec.convert(job.kwargs, MyStruct)`` when you want one, or check
it before anything is enqueued by overriding ``validate_payload``.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from taskit._arguments import check_any
from taskit.backoff import Backoff
from taskit.dedup import Dedup, DedupPolicy, dedup_of
from taskit.errors import SerializationError
from taskit.job import Job, JobResult, decode_arguments
from taskit.limiting import Limit, LimitPlan, LimitUse
from taskit.options import ExceptionTypes, FairBy, resolve_options
from taskit.producer import Producer
from taskit.task import Task

__all__ = ["HandlerTask", "JobHandler", "handler_task"]


class JobHandler(abc.ABC):
    """Base class of class-based handlers.

    Subclasses set ``job_type`` (the task name jobs are created under, e.g. ``"email.send"``) as a
    class attribute or in ``__init__``, take their dependencies in ``__init__`` and implement
    ``handle``. One instance serves every job of its type, concurrently: keep per-job state in
    local variables, not on ``self``.
    """

    #: The name jobs of this handler are created and registered under.
    job_type: str

    @abc.abstractmethod
    async def handle(self, job: Job) -> JobResult:
        """Process ``job`` (payload: ``job.kwargs``). Return ``JobResult(success=True, ...)`` on
        success and ``JobResult(success=False, error=...)`` for an expected failure that must not
        be retried; raise for a failure that should be retried. Returning ``None`` counts as
        success; any other value becomes ``JobResult(success=True, value=...)``."""

    async def on_failure(self, job: Job, error: BaseException) -> None:  # noqa: B027 - optional
        """Called on every failure, also one that will be retried (``job.attempts`` says which
        run failed, ``job.max_retries`` how many reruns were allowed). Exceptions raised here are
        logged and do not change whether the job is retried. The default does nothing."""

    def validate_payload(self, payload: Mapping[str, Any]) -> None:  # noqa: B027 - optional
        """Check a payload before its job is enqueued; raise ``ValueError`` or ``TypeError`` to
        refuse it (nothing is enqueued). Runs in the producer, so keep it pure and quick. The
        default accepts any payload that encodes."""


class _Run:
    """A handler task's callable: ``await handle(job)``, ``None`` meaning success."""

    def __init__(self, handler: JobHandler) -> None:
        self.handler = handler
        self.__qualname__ = f"{type(handler).__qualname__}.handle"
        self.__module__ = type(handler).__module__
        self.__doc__ = type(handler).handle.__doc__

    # Positional-only, so Task never takes a one-argument call for a plain one that needs no
    # check: every enqueue goes through HandlerTask.check_call.
    async def __call__(self, job: Job, /) -> JobResult:
        result = await self.handler.handle(job)
        return JobResult(success=True) if result is None else result


class HandlerTask(Task[..., Any]):
    """The task ``App.register`` makes of a handler: enqueued with keyword arguments only (the
    payload); at execution its callable receives the ``Job`` itself."""

    @property
    def handler(self) -> JobHandler:
        """The registered handler instance."""
        assert isinstance(self.fn, _Run)
        return self.fn.handler

    @property
    def bound_by(self) -> inspect.Signature | None:
        """The payload is keywords: ``fair_by`` reads them as they are."""
        return None

    def dedup_of(self, policy: DedupPolicy, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Dedup:
        """The dedup window of a job of this payload: its keys are the arguments by name."""
        return dedup_of(policy, self.name, kwargs)

    def limit_plan(self, uses: Sequence[Limit | LimitUse]) -> LimitPlan | None:
        """As ``Task.limit_plan``, with keys read from the keyword payload."""
        return LimitPlan(self.name, uses, None) if uses else None

    def check_call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, validate: bool = True
    ) -> None:
        """Refuse positional arguments, then let the handler validate the payload; with
        ``validate``, refuse a value that ``job.kwargs`` would not give back as passed (a tuple,
        a set, a ``Decimal``...: the handler reads plain msgpack types)."""
        if args:
            raise TypeError(
                f"handler task {self.name!r} takes its payload as keyword arguments only, "
                f"got {len(args)} positional"
            )
        self.handler.validate_payload(kwargs)
        if validate:
            check_any(self.name, kwargs)

    def convert_arguments(
        self, args: list[Any], kwargs: dict[str, Any], *, from_json: bool = False
    ) -> tuple[list[Any], dict[str, Any]]:
        """A handler's payload stays as it is (plain values): ``handle`` reads ``job.kwargs``."""
        return args, kwargs

    def load_arguments(self, job: Job) -> tuple[list[Any], dict[str, Any]]:
        """The handler's only argument is the job. Raises ``SerializationError`` if the payload
        is malformed and ``TypeError`` if it carries positional arguments (the job then fails
        without retry, like a function job whose arguments do not fit)."""
        args, _ = decode_arguments(job.payload)
        if args:
            raise TypeError(f"a handler job has no positional arguments, got {len(args)}")
        return [job], {}


def handler_task(
    producer: Producer,
    handler: JobHandler,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_retries: int | None = None,
    backoff: Backoff | None = None,
    timeout: float | None = None,
    retry_on: ExceptionTypes | None = None,
    dont_retry_on: ExceptionTypes | None = None,
    validate: bool | None = None,
    result_ttl: float | timedelta | None = None,
    fair_by: FairBy | None = None,
    dedup: DedupPolicy | None = None,
    limits: Sequence[Limit | LimitUse] | None = None,
) -> HandlerTask:
    """Build (not register) the task for ``handler``, its jobs stored through ``producer``;
    options default as in ``App.task`` (from ``producer.settings``), ``on_failure`` is the
    handler's own.

    Raises ``TypeError`` if ``handler`` is not a ``JobHandler``, ``ValueError`` if its
    ``job_type`` is missing or empty, and ``ValueError``/``TypeError`` naming a bad option.
    """
    if not isinstance(handler, JobHandler):
        raise TypeError(f"app.register() takes a JobHandler instance, got {type(handler).__name__}")
    job_type = getattr(handler, "job_type", None)
    if not isinstance(job_type, str) or not job_type.strip():
        raise ValueError(
            f"{type(handler).__name__}.job_type must be a non-empty string, got {job_type!r}"
        )
    opts = resolve_options(
        producer.settings, job_type, queue=queue, priority=priority, max_retries=max_retries,
        backoff=backoff, timeout=timeout, retry_on=retry_on, dont_retry_on=dont_retry_on,
        validate=validate, on_failure=handler.on_failure, result_ttl=result_ttl,
        fair_by=fair_by, dedup=dedup, limits=limits,
    )  # fmt: skip
    return HandlerTask(producer, _Run(handler), opts)


def check_payload(payload: Any) -> dict[str, Any]:
    """``payload`` as a dict of keyword arguments; ``TypeError`` if it is not a mapping and
    ``SerializationError`` (a ``ValueError``) naming the key if a key is not a string."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"a job payload must be a mapping, got {type(payload).__name__}")
    for key in payload:
        if not isinstance(key, str):
            raise SerializationError(
                f"payload keys must be strings, got {key!r} ({type(key).__name__})"
            )
    return dict(payload)
