"""App: the table of tasks, the settings, and the broker they travel through.

There is no global state: each App owns its tasks, its settings (read from ``TASKIT_*`` once,
when the App is built) and its broker, and ``@app.task`` binds a function to that App only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from types import MappingProxyType
from typing import Any, ParamSpec, Protocol, TypeVar, overload

import anyio
import anyio.from_thread
import anyio.lowlevel

from taskit._portal import SyncBridge
from taskit._results import check_wait, wait_for_result
from taskit._workflow_handle import Workflow
from taskit.backoff import Backoff
from taskit.broker import Broker, from_url
from taskit.config import Settings, redact_url
from taskit.dedup import DedupPolicy
from taskit.errors import CorruptJobError, DuplicateTaskError, UnknownTaskError
from taskit.events import EventKind, Events, Subscriber
from taskit.handlers import HandlerTask, JobHandler, handler_task
from taskit.hooks import Hooks
from taskit.job import Job, JobResult, JobStatus, QueueStats
from taskit.limiting import Limit, LimitBook, LimitUse, parse_limits_json
from taskit.limits import LimitSpec
from taskit.once import DEFAULT_TTL, Once
from taskit.options import (
    ExceptionTypes,
    FairBy,
    OnFailure,
    check_name,
    given_options,
    task_options,
)
from taskit.producer import Producer
from taskit.scheduler import Missed, Schedule, periodic
from taskit.task import Task
from taskit.worker import Worker, WorkerParts

__all__ = ["App"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S", bound=Subscriber)


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` returns: turns a function into a ``Task``."""

    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class App:
    """A taskit application.

    ``broker`` is a URL (``memory://``, ``sqlite:///jobs.db``, ``redis://...``) or a
    ``Broker``; with none, the ``TASKIT_BROKER_URL`` setting, else ``memory://`` (which the
    ``taskit`` commands replace with a SQLite file: ``broker_is_default``). ``settings`` defaults to
    ``Settings.from_env()``; ``default_queue`` overrides its queue for tasks that name none.
    The broker takes every option it was not given explicitly (result TTL, Redis key prefix)
    from these settings (``Broker.configure``), whether it came as a URL or an object.
    Raises ``ConfigurationError`` for a bad URL or setting, naming it.
    """

    def __init__(
        self,
        broker: str | Broker | None = None,
        *,
        default_queue: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            settings = Settings.from_env()
        elif not isinstance(settings, Settings):
            raise TypeError(f"settings must be a Settings, got {type(settings).__name__}")
        if default_queue is not None:
            settings = settings.replace(default_queue=default_queue)
        self.settings = settings
        #: Whether neither the code nor the settings named a broker, so the App fell back to
        #: ``memory://``. Only then do ``taskit``'s commands swap in their shared SQLite file
        #: (``taskit._cli_load``; docs/configuration.md, "The default broker").
        self.broker_is_default = broker is None and settings.broker_url is None
        if broker is None:
            broker = "memory://" if settings.broker_url is None else settings.broker_url
        if isinstance(broker, str):
            self.broker_url = redact_url(broker)
            broker = from_url(broker)
        elif isinstance(broker, Broker):
            self.broker_url = type(broker).__name__
        else:
            raise TypeError(f"broker must be a URL or a Broker, got {type(broker).__name__}")
        broker.configure(settings)  # one rule for a URL and a broker built by hand
        self._tasks: dict[str, Task[Any, Any]] = {}
        self.events = Events()
        #: Code run inside each enqueue and each attempt (``taskit.hooks``; ``taskit.otel``).
        self.hooks = Hooks()
        #: Periodic schedules by name (``periodic``, ``taskit.scheduler.load_schedules``).
        self.schedules: dict[str, Schedule] = {}
        self._bridge = SyncBridge()
        #: Declared limit definitions (``limit``, ``TASKIT_LIMITS_JSON``, which wins); workers
        #: write them where the broker has none.
        self.limits = LimitBook(
            None if settings.limits_json is None else parse_limits_json(settings.limits_json)
        )
        #: Stores the jobs of every task this App makes (``enqueue_many`` too).
        self.producer = Producer(broker, settings, self.events, self._bridge, self.hooks)

    def __repr__(self) -> str:
        return f"<App broker={self.broker_url} tasks={len(self._tasks)}>"

    @property
    def broker(self) -> Broker:
        """The broker jobs travel through. Assigning one (as ``taskit.testing.Harness`` does)
        switches this App's producer, hence every task's enqueues, to it."""
        return self.producer.broker

    @broker.setter
    def broker(self, broker: Broker) -> None:
        self.producer.broker = broker

    # -- tasks --------------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, R]) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        on_failure: OnFailure | None = None,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes | None = None,
        validate: bool | None = None,
        result_ttl: float | timedelta | None = None,
        fair_by: FairBy | None = None,
        dedup: DedupPolicy | None = None,
        limits: Sequence[Limit | LimitUse] | None = None,
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        on_failure: OnFailure | None = None,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes | None = None,
        validate: bool | None = None,
        result_ttl: float | timedelta | None = None,
        fair_by: FairBy | None = None,
        dedup: DedupPolicy | None = None,
        limits: Sequence[Limit | LimitUse] | None = None,
    ) -> Task[P, R] | TaskDecorator:
        """Register a function (``async def`` or ``def``) as a task.

        ``name`` defaults to ``module.qualname``; a name already registered raises
        ``DuplicateTaskError``. Unset options (``None``) take the settings' value (``queue``,
        ``max_retries``, ``backoff``, ``timeout``) or their default (``priority`` 0,
        ``validate`` true); see ``taskit.options``. ``max_retries=3`` allows four runs.
        ``backoff`` is an exponential base in seconds or a callable ``attempt -> seconds``.
        ``timeout`` (seconds) cancels an async handler; a sync handler's thread cannot be
        stopped: it is abandoned and runs on, its result discarded. ``on_failure(job, error)``
        runs on every failure. ``retry_on`` / ``dont_retry_on`` (exception classes) choose
        which raised exceptions are retried; any other fails the job at once (guide: "Choosing
        what to retry"). ``validate=False`` skips the argument type check at enqueue
        (guide: "Arguments"). ``result_ttl`` (seconds or a timedelta; 0: none) is how long
        its finished jobs stay readable, instead of the broker's ``result_ttl`` (guide: "Result
        retention per job"). ``fair_by`` (an argument name, or a function of the arguments
        returning a str or int) gives each job a group: its queue serves groups in turns (flow
        control: "Fair queues"). ``dedup`` (``taskit.Throttle`` or ``taskit.Debounce``) keeps
        one job of a key per window (flow control: "Dedup windows"). ``limits`` (``app.limit``
        limits, bare or ``.by(key)``) are the concurrency and rate limits its jobs need (flow
        control: "Limits"). A bad option raises ``ValueError``/``TypeError`` naming it.
        """
        given = given_options(
            queue=queue, priority=priority, max_retries=max_retries, backoff=backoff,
            timeout=timeout, on_failure=on_failure, retry_on=retry_on,
            dont_retry_on=dont_retry_on, validate=validate, result_ttl=result_ttl,
            fair_by=fair_by, dedup=dedup, limits=limits,
        )  # fmt: skip

        def register(func: Callable[P, R]) -> Task[P, R]:
            if not callable(func):
                raise TypeError(f"@app.task decorates a function, got {type(func).__name__}")
            task_name = name or f"{func.__module__}.{func.__qualname__}"
            opts = task_options(self.settings, task_name, given)
            return self._register(Task(self.producer, func, opts))

        return register(fn) if fn is not None else register  # type: ignore[return-value]

    def register(
        self,
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
        """Register a class-based handler (``taskit.handlers.JobHandler``) as the task named by
        its ``job_type``, with the options of ``App.task`` (``on_failure`` is the handler's own
        method) and exactly its retry, dead-letter and result semantics. Its jobs take a keyword
        payload; ``handle`` receives the ``Job``. Raises ``DuplicateTaskError`` if the name is
        taken."""
        task = handler_task(
            self.producer, handler, queue=queue, priority=priority, max_retries=max_retries,
            backoff=backoff, timeout=timeout, retry_on=retry_on, dont_retry_on=dont_retry_on,
            validate=validate, result_ttl=result_ttl, fair_by=fair_by, dedup=dedup, limits=limits,
        )  # fmt: skip
        self._register(task)
        return task

    def _register(self, task: Task[P, R]) -> Task[P, R]:
        if task.name in self._tasks:
            raise DuplicateTaskError(f"a task named {task.name!r} is already registered")
        self._tasks[task.name] = task
        return task

    def periodic(
        self,
        *,
        every: float | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        queue: str | None = None,
        missed: Missed = "skip",
    ) -> Callable[[Task[P, R]], Task[P, R]]:
        """Run the task below (``@app.periodic(...)`` above ``@app.task``) every ``every``
        seconds or at each ``cron`` time in time zone ``tz``, with ``args``/``kwargs``; see
        ``taskit.scheduler``. A bad expression or zone raises ``ConfigurationError`` here."""
        return periodic(
            self, every=every, cron=cron, tz=tz, name=name, args=args, kwargs=kwargs,
            queue=queue, missed=missed,
        )  # fmt: skip

    def limit(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per: float = 1.0,
        burst: int | None = None,
    ) -> Limit:
        """Declare the limit ``name``, for tasks' ``limits=[...]``: at most ``concurrency`` jobs
        running at once and/or at most ``rate`` starts per ``per`` seconds (bursts of up to
        ``burst``, default ``rate``), per key when used as ``.by(key)``, else over all its
        jobs. With neither ``concurrency`` nor ``rate``: a reference to a limit defined
        elsewhere (configuration, or the broker), declaring nothing. Workers write the
        declared definition where the broker has none; the broker's live one is what counts
        (``taskit limit set``); ``TASKIT_LIMITS_JSON`` wins over the code for a name both
        give. ``ValueError``/``TypeError`` for a bad name or value, or a name declared again
        with other values (flow control: "Limits")."""
        spec = None
        if concurrency is not None or rate is not None or burst is not None or per != 1.0:
            spec = LimitSpec(concurrency=concurrency, rate=rate, burst=burst)
            if per != spec.per:  # the default stays the default (left out of its JSON)
                spec = LimitSpec(concurrency=concurrency, rate=rate, per=per, burst=burst)
        return self.limits.declare(name, spec)

    def on(self, *kinds: EventKind | str) -> Callable[[S], S]:
        """Subscribe the decorated ``fn(event: JobEvent)`` (sync or async) to job events of
        ``kinds`` (every kind when none is given); see ``taskit.events``."""
        return lambda fn: self.events.subscribe(fn, kinds)

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The registered tasks by name (read-only)."""
        return MappingProxyType(self._tasks)

    def get_task(self, name: str) -> Task[..., Any]:
        """The registered task called ``name``; ``UnknownTaskError`` if there is none."""
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTaskError(name) from None

    def remote(
        self,
        name: str,
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
    ) -> Task[..., Any]:
        """A handle to enqueue task ``name`` without registering or importing it here.

        For producers that do not import the workers' code: arguments are not checked against a
        signature (the worker checks them), and the name is not checked either. If ``name`` is
        registered here, its signature is checked and its options apply unless given here.
        Options are those of ``App.task`` but ``on_failure``, checked alike. ``queue``,
        ``priority``, ``max_retries``, ``timeout`` and ``result_ttl`` travel on the job;
        ``backoff``, ``retry_on`` and ``dont_retry_on`` (like ``on_failure``) are the business
        of the worker that runs the task, which uses its own task's, so here they are only
        checked and kept in ``opts``. Unset, the job's ``timeout``
        stays ``None`` for a task not registered here, so the worker's own task timeout applies.
        """
        check_name(name)
        changes = given_options(
            queue=queue, priority=priority, max_retries=max_retries, backoff=backoff,
            timeout=timeout, retry_on=retry_on, dont_retry_on=dont_retry_on, validate=validate,
            result_ttl=result_ttl, fair_by=fair_by, dedup=dedup, limits=limits,
        )  # fmt: skip
        known = self._tasks.get(name)
        if known is not None:
            if not changes:
                return known
            return type(known)(self.producer, known.fn, dataclasses.replace(known.opts, **changes))
        changes.setdefault("timeout", None)  # see above: the worker's task timeout applies
        return Task(self.producer, None, task_options(self.settings, name, changes))

    # -- producing ---------------------------------------------------------------------------
    async def enqueue(self, name: str, /, *args: Any, **kwargs: Any) -> Job:
        """Enqueue registered task ``name``; ``UnknownTaskError`` if it is not registered
        (use ``app.remote(name).enqueue(...)`` to enqueue a task this process does not know)."""
        return await self.get_task(name).enqueue(*args, **kwargs)

    async def enqueue_many(self, jobs: Iterable[Job]) -> list[Job]:
        """Enqueue prepared jobs (``task.prepare(...)``) in one broker round trip, all or none."""
        return await self.producer.submit(list(jobs))

    def enqueue_many_sync(self, jobs: Iterable[Job]) -> list[Job]:
        """``enqueue_many`` for code without an event loop."""
        return self.producer.submit_sync(list(jobs))

    # -- reading -----------------------------------------------------------------------------
    async def get_job(self, job_id: str) -> Job | None:
        """The job, or ``None`` if it never existed or its finished record expired.
        ``CorruptJobError`` if its stored record is unreadable (it names the field)."""
        return await self.broker.get(job_id)

    async def cancel(self, job_id: str) -> bool:
        """Cancel a waiting job (it never runs) or ask a running one to stop. ``False`` when the
        job is finished or unknown."""
        cancelled = await self.broker.cancel(job_id)
        if cancelled and self.events:
            await self.events.after_cancel(await self.broker.get(job_id))
        return cancelled

    async def requeue_dead(self, queue: str, job_ids: Sequence[str] | None = None) -> int:
        """Make dead letters of ``queue`` pending again (all of them when ``job_ids`` is None),
        attempts reset; emits ``requeued`` for each. Returns how many were requeued."""
        if not self.events:
            return await self.broker.requeue_dead(queue, job_ids)
        chosen = job_ids
        if chosen is None:
            chosen = [job.id for job in await self.broker.dead_letters(queue, limit=1_000_000)]
        count = await self.broker.requeue_dead(queue, chosen)
        for job_id in chosen:
            try:
                again = await self.broker.get(job_id)
            except CorruptJobError:  # an unreadable dead letter: left where it is, not requeued
                continue
            if again is not None and again.status is JobStatus.PENDING:
                await self.events.job(EventKind.REQUEUED, again)
        return count

    async def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Per-queue counts: queued, scheduled, running, completed, failed, dead."""
        return await self.broker.stats(queues)

    async def pause(self, queue: str) -> bool:
        """Pause ``queue`` for every worker: none starts another of its jobs (running ones
        finish; waiting ones wait) until ``resume``. ``False`` if it was paused already."""
        return await self.broker.pause_queue(queue)

    async def resume(self, queue: str) -> bool:
        """Resume a paused ``queue``: waiting workers take its jobs at once. ``False`` if it
        was not paused."""
        return await self.broker.resume_queue(queue)

    async def result(
        self, job_id: str, *, timeout: float | None = None, poll_interval: float = 0.05
    ) -> JobResult:
        """Wait until the job finishes and return its ``JobResult``.

        Raises ``JobNotFoundError`` if there is no such job and ``ResultTimeoutError`` if it has
        not finished within ``timeout`` seconds (``None``: wait as long as it takes). A bad
        ``timeout`` or ``poll_interval`` raises ``ValueError`` naming it, before any read.
        """
        check_wait(timeout, poll_interval)
        return await wait_for_result(self.broker, job_id, timeout, poll_interval)

    def workflow(self, workflow_id: str) -> Workflow[Any]:
        """The handle of workflow ``workflow_id`` (``taskit.canvas``), as enqueued anywhere:
        its ``state``, ``result`` (its sinks' values: one value for one sink, else their list)
        and ``cancel``. Nothing is read until one of them is called."""
        return Workflow(workflow_id, self.producer)

    # -- doing a side effect once --------------------------------------------------------------
    def once(self, key: str, *, ttl: float = DEFAULT_TTL, hold: float | None = None) -> Once:
        """A guard that lets one run do the work of ``key``: ``async with app.once(key) as
        first: if first: ...`` (``with`` in sync code); see ``taskit.once`` for what it promises.

        ``ttl``: seconds a success is remembered (a day by default). ``hold``: seconds a run
        holds the key, after which a worker that died in the body is given up (the settings'
        ``visibility_timeout``, a job's lease, by default); make it longer than the body takes.
        ``ValueError`` for an empty key or a duration that is not > 0."""
        if hold is None:
            hold = self.settings.visibility_timeout
        return Once(self.broker, key, ttl=ttl, hold=hold, bridge=self._bridge)

    # -- running -----------------------------------------------------------------------------
    def worker(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        name: str | None = None,
        prefetch: int | None = None,
    ) -> Worker:
        """A worker for this App's broker, tasks, settings, events and hooks
        (``taskit.worker``); ``concurrency`` and ``prefetch`` default to the settings'."""
        parts = WorkerParts(
            broker=self.broker, tasks=self.tasks, settings=self.settings, events=self.events,
            broker_url=self.broker_url, hooks=self.hooks, limits=self.limits,
        )  # fmt: skip
        return Worker(parts, queues=queues, concurrency=concurrency, name=name, prefetch=prefetch)

    # -- sync bridge -------------------------------------------------------------------------
    def run_sync(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` from code without an event loop, on the App's own loop thread.

        Raises ``RuntimeError`` when called from async code (await the async method instead).
        """
        return self._bridge.call(fn, *args)

    @property
    def sync_thread_running(self) -> bool:
        """Whether the App's loop thread (started by the first ``run_sync``, or a ``*_sync``
        call that needs it) is running; ``close`` stops it. A ``Task.enqueue_sync`` on a broker
        with a blocking path (Redis) does not start it."""
        return self._bridge.running

    async def close(self) -> None:
        """Close the broker's connections and stop the sync bridge's thread."""
        await self.broker.close()
        await anyio.to_thread.run_sync(self._bridge.stop)

    def close_sync(self) -> None:
        """``close`` for code without an event loop."""
        if not self._bridge.stop(before=self.broker.close):
            anyio.run(self.broker.close)  # no loop thread ran: close here (blocking clients)
