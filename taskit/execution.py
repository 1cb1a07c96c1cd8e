"""Running one leased job: resolve its task, convert its arguments, call the handler, and turn
what happened into an ``Outcome`` for the broker.

| what happened                                   | outcome                                 |
|-------------------------------------------------|-----------------------------------------|
| returned ``v``                                  | COMPLETE, ``JobResult(success=True, v)`` |
| returned ``JobResult(success=False)``, ``Fail`` | FAIL (expected, not retried)            |
| raised, or timed out, attempts left             | RETRY after the backoff delay           |
| raised or timed out, not one the task retries   | FAIL (``retry_on`` / ``dont_retry_on``) |
| ``Retry(delay)`` raised, attempts left          | RETRY after ``delay``                   |
| raised, timed out or ``Retry``, none left       | DEAD_LETTER                             |
| not started by its ``expires_at``                | CANCEL, ``error_type`` "Expired"        |
| unknown task name                               | DEAD_LETTER (nothing here can run it)   |
| arguments that do not fit the signature/types   | FAIL (permanent: retrying cannot help)  |
| the worker stopped it: shutdown                 | RELEASE (back in the queue at once)     |
| the worker stopped it: cancel requested         | CANCEL                                  |
| the worker stopped it: lease lost               | nothing (the job belongs to another)    |
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec

from taskit._feed import fed_value, is_fed
from taskit._storable import check_result
from taskit._threads import HandlerThreads
from taskit.backoff import BackoffPolicy, Exponential
from taskit.clock import Clock, SystemClock
from taskit.errors import Fail, JobTimeoutError, Retry, SerializationError, UnknownTaskError
from taskit.job import (
    Job,
    JobResult,
    Lease,
    Outcome,
    OutcomeKind,
    decode_arguments,
    describe_error,
)
from taskit.progress import Reporter, reporting

if TYPE_CHECKING:
    from taskit.broker.base import Broker
    from taskit.options import TaskOptions
    from taskit.task import Task

__all__ = [
    "Executor",
    "Prepared",
    "RunningJob",
    "StopReason",
    "retries",
    "retry_delay",
    "retry_or_dead",
    "stopped_outcome",
]

log = logging.getLogger(__name__)

#: Longest retry delay (a year): a longer one (even ``inf``) is cut to it, so a due time always
#: fits in a datetime.
MAX_RETRY_DELAY = 365 * 86400.0
#: Stands in for a task's backoff policy when that raises or answers no delay (NaN, -1, None).
_FALLBACK_BACKOFF = Exponential()


class StopReason(enum.Enum):
    """Why the worker stopped a running job from outside."""

    RELEASE = "release"
    CANCEL = "cancel"
    LEASE_LOST = "lease lost"


@dataclass(eq=False)
class RunningJob:
    """A job being run (or reserved, waiting to start): its lease, the cancel scope that lets
    the worker stop it, and where its handler's ``report_progress`` calls land (``reporter``).

    ``held_until``: until when the lease surely holds, on ``time.monotonic()`` (the reserve's
    answer, then each extend's request, plus the lease): a job not started by then is not
    started (its lease may have passed to another worker while the worker could not extend
    it)."""

    lease: Lease
    reason: StopReason | None = None
    held_until: float = math.inf
    reporter: Reporter = field(init=False)
    #: Called by ``stop`` after the reason is set (on the event loop): a job whose handler runs
    #: in a thread of its own chain (``taskit._chain``) is taken from that thread there.
    on_stop: Callable[[RunningJob], None] | None = None
    _scope: anyio.CancelScope | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.reporter = Reporter(self.lease.job, self.lease.token)

    @property
    def scope(self) -> anyio.CancelScope:
        """The cancel scope its handler runs in, made on first use (on the event loop: a job
        made in a chain's thread has none until the loop asks)."""
        return self.scope_made(anyio.CancelScope)

    def scope_made(self, make: Callable[[], anyio.CancelScope]) -> anyio.CancelScope:
        """``scope``, made by ``make()`` if it has none yet (the executor's cheaper way)."""
        if self._scope is None:
            self._scope = make()
        return self._scope

    def stop(self, reason: StopReason) -> None:
        """Stop the handler; the first reason given wins."""
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()
        if self.on_stop is not None:
            self.on_stop(self)


@dataclass(eq=False, slots=True)
class Prepared:
    """A job ready to be called by a thread with no event loop (``Executor.prepare_sync``):
    its sync handler's task, its arguments converted, and its timeout (None: none)."""

    running: RunningJob
    task: Task[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float | None


class Executor:
    """Runs jobs for one worker: each by the task of its name in ``tasks`` (read at each job, so
    a live view such as ``App.tasks`` sees tasks registered later). ``limiter`` caps how many
    sync handlers run in threads. ``clock`` judges a job's ``expires_at`` (the system clock by
    default). ``broker`` is where a workflow node's fed results are read (``taskit._feed``);
    without one, such a job fails, naming the reason. ``threads``: where sync handlers run (a
    worker's ``HandlerThreads``, which caps them itself); without it, in anyio's threads under
    ``limiter`` (sync ``on_failure`` hooks always run there)."""

    def __init__(
        self,
        tasks: Mapping[str, Task[Any, Any]],
        limiter: anyio.CapacityLimiter,
        clock: Clock | None = None,
        *,
        broker: Broker | None = None,
        threads: HandlerThreads | None = None,
    ) -> None:
        self._tasks = tasks
        self._broker = broker
        self._limiter = limiter
        self._pool = threads
        self._clock = clock if clock is not None else SystemClock()
        self._threads = 0  # sync handlers running in anyio's threads now, abandoned included
        self._threads_lock = threading.Lock()
        # The event loop's own cancel scope class, found at the first job: made directly, a
        # job's scope skips ``anyio.CancelScope``'s look-up of the running backend (sniffio,
        # then the backend's factory) at every job.
        self._scope_type: Callable[[], anyio.CancelScope] = self._first_scope

    def _first_scope(self) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        self._scope_type = type(scope)
        return scope

    @property
    def threads_running(self) -> int:
        """Sync handlers still running in threads. A thread cannot be stopped: a job stopped
        by the worker (timeout, cancel, the end of the grace period) abandons its thread, which
        runs on until the handler returns."""
        return self._threads + (self._pool.running if self._pool is not None else 0)

    async def execute(self, running: RunningJob) -> Outcome | None:
        """Run the job and say how to settle it (``None``: do not settle, the lease is lost).
        The outcome carries the job's ``result_ttl``, for the broker to keep it that long."""
        outcome = await self._execute(running)
        return None if outcome is None else _kept(outcome, running.lease.job)

    def prepare_sync(self, running: RunningJob) -> Prepared | None:
        """``running`` ready to be called in a thread with no event loop, or None where its run
        needs the loop (``execute``): an ``async def`` handler, an unknown task, a workflow node
        fed its parents' results, a job past its ``expires_at``, arguments that do not fit."""
        job = running.lease.job
        if job.expires_at is not None and self._clock.time() > job.expires_at.timestamp():
            return None
        task = self._tasks.get(job.task)
        if task is None or task.fn is None or task.is_async or is_fed(job):
            return None
        try:
            args, kwargs = task.load_arguments(job)
        except (SerializationError, TypeError, msgspec.ValidationError):
            return None
        timeout = job.timeout if job.timeout is not None else task.opts.timeout
        return Prepared(running, task, args, kwargs, timeout)

    def judge(
        self, prepared: Prepared, value: Any, error: BaseException | None, duration: float
    ) -> tuple[Outcome, BaseException | None]:
        """How to settle a call of ``prepared`` made in a thread, which returned ``value`` or
        raised ``error`` after ``duration`` seconds (past its timeout: timed out, as
        ``execute`` would have cut it there); and the error its task's ``on_failure`` hook is
        still to be told of (``failed``, on the event loop; None: nothing to tell). No event
        loop needed."""
        task, job, token = prepared.task, prepared.running.lease.job, prepared.running.lease.token
        if prepared.timeout and duration >= prepared.timeout:
            error = _timed_out(job, task, prepared.timeout)
        if error is None:
            return _kept(self._success(task, job, token, value, duration), job), None
        outcome, tell = self._judged(task, job, token, error)
        return _kept(outcome, job), error if tell and task.opts.on_failure is not None else None

    async def failed(self, prepared: Prepared, error: BaseException) -> None:
        """Tell ``prepared``'s task's ``on_failure`` hook of ``error`` (``judge`` said to)."""
        await self._on_failure(prepared.task, prepared.running.lease.job, error)

    def stopped(self, prepared: Prepared) -> Outcome | None:
        """How to settle ``prepared``, stopped by the worker while it ran in a thread (its
        ``reason``): as ``execute`` settles a stopped job (None: its lease was lost)."""
        running = prepared.running
        job = running.lease.job
        outcome = stopped_outcome(job, running.lease.token, running.reason)
        return None if outcome is None else _kept(outcome, job)

    async def timed_out(self, prepared: Prepared) -> Outcome:
        """How to settle ``prepared``, called in a thread that ran past its timeout (the
        thread runs on, abandoned): as ``execute`` settles a timed-out job, hook included."""
        task, job = prepared.task, prepared.running.lease.job
        error = _timed_out(job, task, prepared.timeout)
        outcome = await self._failure(task, job, prepared.running.lease.token, error)
        return _kept(outcome, job)

    async def _execute(self, running: RunningJob) -> Outcome | None:
        job, token = running.lease.job, running.lease.token
        if job.expires_at is not None and self._clock.time() > job.expires_at.timestamp():
            return _expired(job, token)
        task = self._tasks.get(job.task)
        if task is None or task.fn is None:
            return _outcome(job, token, OutcomeKind.DEAD_LETTER, UnknownTaskError(job.task))
        try:
            fed = await fed_value(self._broker, job) if is_fed(job) else _NOT_FED
        except SerializationError as exc:
            await self._on_failure(task, job, exc)
            return _outcome(job, token, OutcomeKind.FAIL, exc)
        except Exception as exc:  # the broker failed: try again later, as for any error
            return retry_or_dead(job, token, exc, task.opts.backoff)
        try:
            args, kwargs = task.load_arguments(job) if fed is _NOT_FED else _fed(task, job, fed)
        except (SerializationError, TypeError, msgspec.ValidationError) as exc:
            unfit = SerializationError(f"job arguments do not fit task {task.name!r}: {exc}")
            await self._on_failure(task, job, unfit)
            return _outcome(job, token, OutcomeKind.FAIL, unfit)
        timeout = job.timeout if job.timeout is not None else task.opts.timeout
        started = time.perf_counter()
        value: Any = None
        error: BaseException | None = None
        scope = running.scope_made(self._scope_type)
        if timeout:  # one scope for both: a stop by the worker sets ``running.reason``
            scope.deadline = anyio.current_time() + timeout
        with scope, reporting(running.reporter):
            try:
                if task.is_async:  # awaited here: a coroutine less a job than through ``_call``
                    value = await task.fn(*args, **kwargs)
                else:
                    value = await self._call(task, args, kwargs)
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:  # SystemExit, KeyboardInterrupt, any BaseException
                error = exc  # raised by a handler fail its job alone, never end the worker
        duration = time.perf_counter() - started
        if running.reason is not None:
            return stopped_outcome(job, token, running.reason)
        if scope.cancelled_caught:
            if not timeout:  # cancelled from outside without a reason: hand it back
                return stopped_outcome(job, token, StopReason.RELEASE)
            error = _timed_out(job, task, timeout)
        if error is None:
            return self._success(task, job, token, value, duration)
        return await self._failure(task, job, token, error)

    async def _call(self, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        assert task.fn is not None
        if task.is_async:
            return await task.fn(*args, **kwargs)
        if self._pool is not None:  # which counts its running calls itself, under its lock
            return await self._pool.run(functools.partial(task.fn, *args, **kwargs))
        return await anyio.to_thread.run_sync(
            functools.partial(self._in_thread, task.fn, args, kwargs),
            limiter=self._limiter,
            abandon_on_cancel=True,
        )

    def _in_thread(self, fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run a sync handler in one of anyio's threads, counted in ``threads_running`` while
        it runs."""
        with self._threads_lock:
            self._threads += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._threads_lock:
                self._threads -= 1

    def _success(
        self, task: Task[Any, Any], job: Job, token: str, value: Any, duration: float
    ) -> Outcome:
        if isinstance(value, JobResult):
            result = msgspec.structs.replace(value, duration=duration)
        else:
            result = JobResult(success=True, value=value, duration=duration)
        try:  # checked alone, before it joins a settle batch: a bad one must fail only this job
            result, _ = check_result(result)
        except SerializationError as exc:
            bad = SerializationError(f"result of task {task.name!r} cannot be stored: {exc}")
            return _outcome(job, token, OutcomeKind.FAIL, bad)
        if not result.success:
            return Outcome(
                job_id=job.id, token=token, kind=OutcomeKind.FAIL, result=result,
                error=result.error or "handler returned an unsuccessful result",
                error_type=result.error_type, traceback=result.traceback,
            )  # fmt: skip
        return Outcome(job_id=job.id, token=token, kind=OutcomeKind.COMPLETE, result=result)

    async def _failure(
        self, task: Task[Any, Any], job: Job, token: str, error: BaseException
    ) -> Outcome:
        outcome, tell = self._judged(task, job, token, error)
        if tell:
            await self._on_failure(task, job, error)
        return outcome

    @staticmethod
    def _judged(
        task: Task[Any, Any], job: Job, token: str, error: BaseException
    ) -> tuple[Outcome, bool]:
        """How to settle a handler's ``error``, and whether ``on_failure`` is told of it: a
        ``Retry`` asked for is no failure, unless it is the last (dead-lettered)."""
        if isinstance(error, Fail):
            return _outcome(job, token, OutcomeKind.FAIL, error), True
        if isinstance(error, Retry):
            outcome = retry_or_dead(job, token, error, task.opts.backoff, error.delay)
            return outcome, outcome.kind is OutcomeKind.DEAD_LETTER
        if not retries(task.opts, error):
            return _outcome(job, token, OutcomeKind.FAIL, error), True
        return retry_or_dead(job, token, error, task.opts.backoff), True

    async def _on_failure(self, task: Task[Any, Any], job: Job, error: BaseException) -> None:
        hook = task.opts.on_failure
        if hook is None:
            return
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(job, error)
            else:
                outcome = await anyio.to_thread.run_sync(hook, job, error, limiter=self._limiter)
                if inspect.isawaitable(outcome):
                    await outcome
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException:  # user code: even SystemExit must not end the worker
            log.exception(
                "on_failure hook of task %s raised; the job's retry flow is unchanged",
                task.name,
                extra={"job_id": job.id, "task": task.name, "attempt": job.attempts},
            )


def retries(opts: TaskOptions, error: BaseException) -> bool:
    """Whether the task retries ``error`` (raised by its handler, or its ``JobTimeoutError``):
    never if it is one of ``dont_retry_on`` (which wins), else if ``retry_on`` is unset or it is
    one of those (subclasses match, as in ``except``). ``Retry`` and ``Fail`` are decided before
    this, and the reaper's expired leases never ask: a job whose worker died raised nothing."""
    if opts.dont_retry_on is not None and isinstance(error, opts.dont_retry_on):
        return False
    return opts.retry_on is None or isinstance(error, opts.retry_on)


def retry_or_dead(
    job: Job,
    token: str,
    error: BaseException,
    policy: BackoffPolicy,
    requested: float | None = None,
) -> Outcome:
    """RETRY while attempts are left (``attempts <= max_retries``), after ``retry_delay``; else
    DEAD_LETTER. The backoff policy is called only when a retry will happen: never after the
    final attempt (a policy indexing a list of delays must not fail on the dead letter)."""
    if job.attempts > job.max_retries:
        return _outcome(job, token, OutcomeKind.DEAD_LETTER, error)
    delay = retry_delay(policy, job, requested)
    return _outcome(job, token, OutcomeKind.RETRY, error, delay=delay)


def retry_delay(policy: BackoffPolicy, job: Job, requested: float | None = None) -> float:
    """Seconds before the next attempt of ``job``: ``requested`` (by ``Retry``) or
    ``policy(job.attempts)``, cut to ``MAX_RETRY_DELAY``.

    A user's policy must neither stop the worker nor lose the job: one that raises or answers
    anything but a number >= 0 (NaN, a negative number, ``None``, a string, a bool) is logged
    once, as one error naming the job, and the default exponential backoff is used instead.
    """
    if requested is None:
        requested = _policy_delay(policy, job)
    return min(max(requested, 0.0), MAX_RETRY_DELAY)


def _policy_delay(policy: BackoffPolicy, job: Job) -> float:
    attempt = job.attempts
    extra = {"job_id": job.id, "task": job.task, "attempt": attempt}
    try:
        answer: object = policy(attempt)
    except Exception as exc:
        log.error(
            "backoff policy %r raised %s for attempt %d of job %s; retrying it with the "
            "default exponential backoff instead",
            policy, type(exc).__name__, attempt, job.id, exc_info=True, extra=extra,
        )  # fmt: skip
        return _FALLBACK_BACKOFF(attempt)
    if isinstance(answer, bool) or not isinstance(answer, int | float) or not answer >= 0:
        log.error(
            "backoff policy %r gave %r for attempt %d of job %s, not a number of seconds "
            ">= 0; retrying it with the default exponential backoff instead",
            policy, answer, attempt, job.id, extra=extra,
        )  # fmt: skip
        return _FALLBACK_BACKOFF(attempt)
    # min before float: an int past float range (10**400) would raise OverflowError
    return float(min(answer, MAX_RETRY_DELAY))


#: No fed argument (most jobs).
_NOT_FED = object()


def _fed(task: Task[Any, Any], job: Job, fed: Any) -> tuple[list[Any], dict[str, Any]]:
    """The job's arguments converted for its handler, ``fed`` first."""
    args, kwargs = decode_arguments(job.payload)
    args.insert(0, fed)
    return task.convert_arguments(args, kwargs)


def _kept(outcome: Outcome, job: Job) -> Outcome:
    """``outcome`` carrying the job's ``result_ttl``, for the broker to keep it that long."""
    ttl = job.result_ttl
    if ttl is None:
        return outcome
    return msgspec.structs.replace(outcome, result_ttl=ttl)


def _timed_out(job: Job, task: Task[Any, Any], timeout: float | None) -> JobTimeoutError:
    return JobTimeoutError(f"job {job.id} of {task.name!r} timed out after {timeout} s")


def _expired(job: Job, token: str) -> Outcome:
    """A job no worker started before its ``expires_at`` is dropped unrun, as Celery revokes an
    expired task: CANCELLED (not a failure: nothing ran, no retry, no ``on_failure``), with the
    reason as its error."""
    assert job.expires_at is not None
    return Outcome(
        job_id=job.id, token=token, kind=OutcomeKind.CANCEL, error_type="Expired",
        error=f"job expired at {job.expires_at.isoformat()} before a worker started it",
    )  # fmt: skip


def stopped_outcome(job: Job, token: str, reason: StopReason | None) -> Outcome | None:
    """How to settle a job the worker stopped (running, or still waiting to start): CANCEL for
    a cancel, nothing (``None``) for a lost lease, else RELEASE (back in the queue at once, the
    attempt refunded)."""
    if reason is StopReason.CANCEL:
        return Outcome(
            job_id=job.id, token=token, kind=OutcomeKind.CANCEL, error="job was cancelled",
            error_type="Cancelled",
        )  # fmt: skip
    if reason is StopReason.LEASE_LOST:
        return None
    return Outcome(job_id=job.id, token=token, kind=OutcomeKind.RELEASE)


def _outcome(
    job: Job, token: str, kind: OutcomeKind, error: BaseException, *, delay: float = 0.0
) -> Outcome:
    text, error_type, trace = describe_error(error)
    result = None
    if kind in (OutcomeKind.FAIL, OutcomeKind.DEAD_LETTER):  # the traceback is kept on the job
        result = JobResult(success=False, error=text, error_type=error_type)
    return Outcome(
        job_id=job.id, token=token, kind=kind, result=result, error=text,
        error_type=error_type, traceback=trace, delay=delay,
    )  # fmt: skip
