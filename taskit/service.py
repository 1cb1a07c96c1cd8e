"""The job-service view of an App: create jobs by type with a payload, read, cancel and count them;
and a manager that runs several workers inside an application's lifespan.

    service = JobService(app)
    job = await service.create_job("email.send", {"to": "ada@example.com"}, queue="emails",
                                   priority=5, created_by="user-42", metadata={"campaign": "x"})
    job = await service.create_job("email.send", {"to": "ada@example.com"},
                                   queue_name="emails", priority=5)   # the JobCreator port's way
    isinstance(service, JobCreator)                 # True: adapters can depend on the port
    await service.get_job(job.id)
    await service.cancel_job(job.id)
    stats = await service.get_job_stats()          # queued, processing, completed, failed
    result = await service.process_one("emails")   # run one job here (scripts, tests)

    async with WorkerManager(app, workers=2, queues=["emails", "default"]):
        ...                                         # serve requests; leaving stops gracefully

Both are thin: every operation is one App call, so jobs created here are the same jobs as those
enqueued with ``task.enqueue`` and run by the same workers.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc

from taskit.dedup import DedupPolicy
from taskit.handlers import check_payload
from taskit.job import Job, JobResult, encode_value
from taskit.limiting import Limit, LimitUse
from taskit.oneshot import JobFunction, process_one
from taskit.task import TaskVariant
from taskit.worker import Worker, WorkerStats

if TYPE_CHECKING:
    from taskit.app import App

__all__ = ["JobService", "JobStats", "WorkerManager"]


@dataclass(frozen=True)
class JobStats:
    """Counts over one or more queues.

    ``queued``: waiting (ready, scheduled for later, or waiting to be retried); ``processing``:
    leased to a worker now; ``completed``: finished successfully (a running total); ``failed``:
    failed for good, i.e. failed without retry (a running total) plus those now in the dead
    letters. ``App.stats`` has the finer per-queue breakdown.
    """

    queued: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0


class JobService:
    """Job operations by type name, over ``app``. Works for class handlers and decorated
    functions alike: the payload becomes the job's keyword arguments."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def create_job(
        self,
        job_type: str,
        payload: Mapping[str, Any] | None = None,
        queue_name: str | None = None,
        priority: int | None = None,
        *,
        scheduled_at: datetime | None = None,
        queue: str | None = None,
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
    ) -> Job:
        """Create and enqueue a job of the registered task ``job_type``; returns it as stored.

        The options are ``Task.options``'s (``taskit.options.CALL_OPTIONS``): unset ones keep
        the task's own. ``queue_name`` is ``queue`` as the ``JobCreator`` port
        (``taskit.ports``) spells it; give one or the other (both: ``TypeError``).
        ``queue_name`` and ``priority`` may also be passed by position, as the port allows.
        ``scheduled_at`` must be timezone-aware (``datetime.now(UTC) + ...``); the job never
        runs before it. ``created_by`` is kept as a string. Raises, with nothing
        enqueued: ``UnknownTaskError`` (a ``ValueError``) for an unregistered type;
        ``SerializationError`` (a ``ValueError``) for a payload or metadata that cannot be
        encoded or a payload key that is not a string; ``TypeError`` for a payload that is not a
        mapping or does not fit the task's signature; ``ValueError`` for a naive
        ``scheduled_at``; ``ValueError``/``TypeError`` naming a bad option.
        """
        variant, kwargs = self._prepare(
            job_type, payload, queue=_one_queue(queue, queue_name), priority=priority,
            max_retries=max_retries, timeout=timeout, validate=validate, job_id=job_id,
            metadata=metadata, created_by=created_by, expires=expires, result_ttl=result_ttl,
            dedup=dedup,
            limits=limits, depends_on=depends_on,
        )  # fmt: skip
        if scheduled_at is None:
            return await variant.enqueue(**kwargs)
        return await variant.schedule(scheduled_at, **kwargs)

    def create_job_sync(
        self,
        job_type: str,
        payload: Mapping[str, Any] | None = None,
        queue_name: str | None = None,
        priority: int | None = None,
        *,
        scheduled_at: datetime | None = None,
        queue: str | None = None,
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
    ) -> Job:
        """``create_job`` for code without an event loop (a Flask or Django view, a script)."""
        variant, kwargs = self._prepare(
            job_type, payload, queue=_one_queue(queue, queue_name), priority=priority,
            max_retries=max_retries, timeout=timeout, validate=validate, job_id=job_id,
            metadata=metadata, created_by=created_by, expires=expires, result_ttl=result_ttl,
            dedup=dedup,
            limits=limits, depends_on=depends_on,
        )  # fmt: skip
        if scheduled_at is None:
            return variant.enqueue_sync(**kwargs)
        return variant.schedule_sync(scheduled_at, **kwargs)

    def _prepare(
        self, job_type: str, payload: Mapping[str, Any] | None, **options: Any
    ) -> tuple[TaskVariant[..., Any], dict[str, Any]]:
        """The task's variant with ``options`` (``Task.options`` checks them) and the payload
        as keyword arguments; refuses unencodable metadata now, not halfway into the broker."""
        task = self.app.get_task(job_type)
        kwargs = check_payload({} if payload is None else payload)
        variant = task.options(**options)
        if options.get("metadata"):
            encode_value(dict(options["metadata"]))
        return variant, kwargs

    async def process_one(
        self,
        queue: str | Sequence[str] | None = None,
        handler: JobFunction | None = None,
        *,
        timeout: float = 0.0,
    ) -> JobResult | None:
        """Run at most one job of ``queue`` (a name or names, most preferred first; default: the
        default queue) in this process, as a worker would, and return its ``JobResult``; ``None``
        if none was ready within ``timeout`` seconds. For scripts and tests; see
        ``taskit.oneshot.process_one`` for what the result holds. ``handler(job)`` (sync or
        async) runs the job instead of its registered task, whatever its task name; its return
        value is the result, and what it raises is retried as the task's would be."""
        return await process_one(self.app, queue, handler, timeout=timeout)

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or ``None`` if it never existed or its finished record has expired."""
        return await self.app.get_job(job_id)

    async def cancel_job(self, job_id: str) -> bool:
        """Cancel a waiting job (it never runs) or ask a running one to stop (its worker stops it
        within a third of the visibility timeout). ``False`` if it is finished or unknown."""
        return await self.app.cancel(job_id)

    async def get_job_stats(self, queues: Sequence[str] | None = None) -> JobStats:
        """Counts summed over ``queues`` (default: every queue the broker knows)."""
        totals = dict.fromkeys((f.name for f in fields(JobStats)), 0)
        for stats in (await self.app.stats(queues)).values():
            totals["queued"] += stats.queued + stats.scheduled
            totals["processing"] += stats.running
            totals["completed"] += stats.completed
            totals["failed"] += stats.failed + stats.dead
        return JobStats(**totals)


class WorkerManager:
    """Runs ``workers`` workers of ``app`` side by side, each serving ``queues`` in that order with
    ``concurrency`` jobs at a time (default: the ``concurrency`` setting), inside the caller's
    event loop.

    Use ``async with manager:``, or ``await manager.start()`` and later ``await manager.stop()``
    from the same task (as in an ASGI lifespan: start before its ``yield``, stop after). Stopping
    stops every worker at once: they stop reserving, let in-flight jobs finish within the grace
    period (``grace_period`` setting), then hand the rest back to their queues; ``stop`` returns
    when every worker has exited. Nothing is lost either way.

    One worker with ``concurrency=N`` runs N jobs at a time with one fetch loop; several workers
    are for isolating their fetch loops and leases from one another.
    """

    def __init__(
        self,
        app: App,
        *,
        workers: int = 1,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        self.app = app
        self.workers = [
            Worker(app, queues=queues, concurrency=concurrency, name=f"{_host_name()}.{i}")
            for i in range(workers)
        ]
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def running(self) -> bool:
        """True between ``start`` and the end of ``stop``."""
        return self._tg is not None

    @property
    def stats(self) -> WorkerStats:
        """What the workers did, summed."""
        total = WorkerStats()
        for worker in self.workers:
            for f in fields(WorkerStats):
                setattr(total, f.name, getattr(total, f.name) + getattr(worker.stats, f.name))
        return total

    async def start(self) -> None:
        """Start every worker in the background; ``RuntimeError`` if already started."""
        if self._tg is not None:
            raise RuntimeError("this WorkerManager is already running")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        for worker in self.workers:
            tg.start_soon(_run, worker)

    async def stop(self, *, graceful: bool = True) -> None:
        """Stop every worker (see the class docstring) and wait until all have exited.
        ``graceful=False`` hands running jobs back at once. A no-op when not running."""
        await self._exit(None, graceful=graceful)

    async def _exit(self, exc: BaseException | None, *, graceful: bool = True) -> bool | None:
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        for worker in self.workers:  # cancelled from outside: at once, handing jobs back
            worker.stop(graceful=graceful and not cancelled)
        if exc is not None and not cancelled:
            # The application's own error: stop the workers, then let it out unwrapped.
            await tg.__aexit__(None, None, None)
            return None
        return await tg.__aexit__(
            type(exc) if exc else None, exc, exc.__traceback__ if exc else None
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._exit(exc)


async def _run(worker: Worker) -> None:
    # Shielded: a cancelled host must not cut a worker's stop short (its running jobs would
    # stay leased until their leases expire); ``_exit`` always stops it, in bounded time.
    with anyio.CancelScope(shield=True):
        await worker.run()


def _one_queue(queue: str | None, queue_name: str | None) -> str | None:
    """The queue ``create_job`` was given, by either of its names."""
    if queue_name is None:
        return queue
    if queue is not None:
        raise TypeError(f"give queue or queue_name, not both (got {queue!r} and {queue_name!r})")
    return queue_name


def _host_name() -> str:
    return f"{socket.gethostname()}.{os.getpid()}"
