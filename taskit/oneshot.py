"""One job, run in the calling task: ``process_one`` reserves at most one job from the given
queues, runs it with the worker's ``Executor`` while keeping its lease alive, settles it, and
returns its ``JobResult``. For scripts and tests that want to step through a queue; a ``Worker``
does the same for many jobs at once, with a fetch loop, a reaper and its presence record.

    result = await process_one(app, "emails")        # None: nothing was ready
    result = await process_one(WorkerParts(broker=broker, tasks=tasks), ["a", "b"], timeout=1)

It takes the worker's parts (``WorkerParts``, or an App), never the App itself, so it can be
built and tested without one. ``JobService.process_one`` is the spelling on the job service.

With a ``handler`` (a function of the ``Job``, ``async def`` or ``def``), the job is run by it
instead of by its registered task, whatever its task name, registered here or not:

    async def my_handler(job: Job) -> object:
        if job.task == "send_email":
            return await send_email(**job.kwargs)
        raise Fail(f"no handler for {job.task}")

    result = await process_one(app, "emails", my_handler)

A ``taskit worker`` still runs registered tasks only: a handler is for this call alone.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import anyio
import msgspec

from taskit._leases import keep_leases
from taskit._worker_parts import WorkerSource
from taskit.broker.base import Broker
from taskit.errors import TaskitError
from taskit.events import WorkerEvents
from taskit.execution import Executor, RunningJob
from taskit.job import Job, JobResult, Lease, Outcome, OutcomeKind
from taskit.options import task_options
from taskit.producer import Producer
from taskit.progress import ProgressFlusher
from taskit.task import Task

__all__ = ["JobFunction", "process_one"]

#: A caller's handler for ``process_one``: called with the ``Job`` (``async def`` or ``def``; a
#: sync one runs in a worker thread). Its return value is the job's result (a ``JobResult`` is
#: taken as it is); raising follows the job's retry policy, ``Fail`` fails it at once.
JobFunction = Callable[[Job], Any]

log = logging.getLogger(__name__)


async def process_one(
    parts: WorkerSource,
    queues: str | Sequence[str] | None = None,
    handler: JobFunction | None = None,
    *,
    timeout: float = 0.0,
    name: str | None = None,
) -> JobResult | None:
    """Run at most one job of ``queues`` (a name or names, most preferred first; default: the
    settings' default queue) here and now; return its ``JobResult``, or ``None`` if no job was
    ready within ``timeout`` seconds (0: do not wait).

    The job is run and settled exactly as a worker would (same timeout, retries, dead letters,
    ``on_failure`` hook and events; ``name`` is the worker name the events carry). The result
    is that attempt's: ``success=True`` with the value, or ``success=False`` with the error of
    a failure, a retry to come, a cancel, or a lease lost to another worker (``error_type``
    ``"LeaseLost"``: its outcome was dropped). ``get_job`` tells where the job stands now.

    ``handler`` (see ``JobFunction``): run the job by it instead of by its task, also a job
    whose task is not registered here (it is not dead-lettered as unknown). The job keeps the
    policy of its registered task (retries, backoff, ``retry_on`` / ``dont_retry_on``,
    timeout, ``on_failure``), or the settings' defaults for a task not registered here, with
    the job's own ``max_retries`` and ``timeout``. ``TypeError`` if it is not callable.

    Cancelled while the job runs: the job is stopped and handed back to its queue (attempt
    refunded) before the cancellation goes on. A broker error while settling is raised; the
    job then runs again once its lease expires.
    """
    if handler is not None and not callable(handler):
        raise TypeError(f"handler must be a callable (job) -> result, got {handler!r}")
    names = _queue_names(queues, parts.settings.default_queue)
    settings, broker = parts.settings, parts.broker
    leases = await broker.reserve(
        names, count=1, lease=settings.visibility_timeout, timeout=timeout
    )
    if not leases:
        return None
    (lease,) = leases
    tasks = parts.tasks if handler is None else _HandlerTasks(parts, handler)
    executor = Executor(
        tasks, anyio.CapacityLimiter(settings.sync_concurrency), broker=parts.broker
    )
    worker = name or f"{socket.gethostname()}.{os.getpid()}.process_one"
    events = WorkerEvents(parts.events, worker) if parts.events else None
    failed: Exception | None = None  # raised after the events' task group, not inside a group
    async with anyio.create_task_group() as services:
        if events:
            services.start_soon(events.run)
        try:
            on_stored = events.progress if events else None
            progress = ProgressFlusher(broker, settings.progress_interval, on_stored)
            outcome, applied, took = await _run_and_settle(
                broker, lease, executor, (settings.visibility_timeout, progress), events
            )
        except Exception as exc:
            failed = exc
        if events:
            await events.close()  # deliver the events before returning
        services.cancel_scope.cancel()
    if failed is not None:
        raise failed
    return _result(outcome if applied else None, took)


async def _run_and_settle(
    broker: Broker,
    lease: Lease,
    executor: Executor,
    upkeep: tuple[float, ProgressFlusher],
    events: WorkerEvents | None,
) -> tuple[Outcome | None, bool, float]:
    """Run the job and settle it; the outcome, whether the broker applied it, the run time."""
    job = lease.job
    extra = {"job_id": job.id, "task": job.task, "queue": job.queue, "attempt": job.attempts}
    if events:
        events.started(job)
    log.debug("job %s (%s) attempt %d started", job.id, job.task, job.attempts, extra=extra)
    began = time.perf_counter()
    outcome = await _execute(broker, lease, executor, upkeep)
    took = time.perf_counter() - began
    applied = outcome is not None and (await broker.settle([outcome]))[0]
    if outcome is not None and applied:
        log.info("job %s (%s) %s in %.3f s", job.id, job.task, outcome.kind.value, took,
                 extra={**extra, "duration": round(took, 6)})  # fmt: skip
        if events:
            events.settled(job, outcome, took)
    else:
        log.warning("job %s lost its lease; its outcome is dropped", job.id, extra=extra)
    return outcome, applied, took


async def _execute(
    broker: Broker, lease: Lease, executor: Executor, upkeep: tuple[float, ProgressFlusher]
) -> Outcome | None:
    """Run the leased job, extending its lease and storing its progress meanwhile (its last
    report before it settles); hand it back if cancelled."""
    running = RunningJob(lease)
    lease_seconds, progress = upkeep
    try:
        async with anyio.create_task_group() as loops:
            loops.start_soon(keep_leases, broker, lambda: [running], lease_seconds)
            loops.start_soon(progress.run, lambda: [running.reporter])
            outcome = await executor.execute(running)
            loops.cancel_scope.cancel()
        if outcome is not None:
            await progress.flush([running.reporter])
        return outcome
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await _hand_back(broker, lease)
        raise


async def _hand_back(broker: Broker, lease: Lease) -> None:
    job = lease.job
    try:
        await broker.settle([Outcome(job_id=job.id, token=lease.token, kind=OutcomeKind.RELEASE)])
    except (TaskitError, OSError) as exc:  # its lease expires; a reaper hands it back then
        log.warning("job %s could not be handed back: %s", job.id, exc, extra={"job_id": job.id})


def _result(outcome: Outcome | None, took: float) -> JobResult:
    """What ``process_one`` answers for a settled ``outcome`` (``None``: the lease was lost)."""
    if outcome is None:
        return JobResult(
            success=False, error="the job's lease passed to another worker; this run's outcome "
            "was dropped", error_type="LeaseLost", duration=took,
        )  # fmt: skip
    result = outcome.result
    if result is None:  # retry, cancel or release: the outcome says why
        error = outcome.error or "the job was handed back to its queue"
        return JobResult(
            success=False, error=error, error_type=outcome.error_type,
            traceback=outcome.traceback, duration=took,
        )  # fmt: skip
    if result.duration is None:
        result = msgspec.structs.replace(result, duration=took)
    return result


class _HandlerCall(Task[..., Any]):
    """A task whose function is the caller's handler: it is given the ``Job`` itself."""

    def load_arguments(self, job: Job) -> tuple[list[Any], dict[str, Any]]:
        return [job], {}


class _HandlerTasks(Mapping[str, Task[Any, Any]]):
    """The executor's task lookup for ``process_one(..., handler)``: every task name gives the
    handler, under its registered task's options when there is one, else the settings'."""

    def __init__(self, parts: WorkerSource, handler: JobFunction) -> None:
        self._parts, self._handler = parts, handler

    def __getitem__(self, name: str) -> Task[Any, Any]:
        known = self._parts.tasks.get(name)
        if known is not None:
            return _HandlerCall(known.producer, self._handler, known.opts)
        if not isinstance(name, str) or not name:  # a stand-in for an unreadable job
            raise KeyError(name)
        producer = Producer(self._parts.broker, self._parts.settings)  # never used to enqueue
        opts = task_options(self._parts.settings, name, {})
        return _HandlerCall(producer, self._handler, opts)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts.tasks)

    def __len__(self) -> int:
        return len(self._parts.tasks)


def _queue_names(queues: str | Sequence[str] | None, default: str) -> list[str]:
    names = [queues] if isinstance(queues, str) else list(queues or [default])
    if not names or not all(isinstance(q, str) and q.strip() for q in names):
        raise ValueError(f"queues must be non-empty names, got {queues!r}")
    return names
