"""Hooks: code that runs inside taskit's own steps, for tracing and context propagation.

Events (``taskit.events``) report a transition after the fact, on their own time. A hook runs in
the step itself:

* an **enqueue hook** ``fn(jobs) -> context manager`` wraps storing one batch of jobs, in the
  enqueuer's thread and context; the context manager yields the jobs to store, which may be
  copies with more metadata (``msgspec.structs.replace``), and sees the enqueue's error, if any;
* a **run hook** ``fn(job) -> Attempt`` is asked for each attempt a worker starts. The worker
  enters the ``Attempt`` around the run (the handler runs inside it, so a context variable it
  sets, such as the current trace span, is the handler's, also in a sync handler's thread), then
  calls its ``settled(outcome, applied)`` once the broker answered.

::

    @contextmanager
    def stamp(jobs: list[Job]) -> Iterator[list[Job]]:
        tenant = current_tenant()
        yield [replace(job, metadata={**job.metadata, "tenant": tenant}) for job in jobs]

    app.hooks.on_enqueue(stamp)

An enqueue hook that raises fails the enqueue (nothing is stored if it raises before the jobs
are). A run hook never changes what happens to a job: one that raises is logged and skipped.
With no hook, each step costs one truth test. ``taskit.otel`` is built on these two hooks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol, TypeVar

from taskit.job import Job, Outcome

__all__ = ["Attempt", "EnqueueHook", "Hooks", "RunHook"]

log = logging.getLogger(__name__)

F = TypeVar("F")


class Attempt(Protocol):
    """One attempt as a run hook follows it: entered around the run, then told how it settled.

    ``settled`` is called once, after ``__exit__``: ``outcome`` is what the worker submitted
    (``None``: the lease was lost, nothing was submitted) and ``applied`` whether the broker
    applied it. A worker stopped before the broker answered may never call it (``__exit__``
    then saw an exception, or the process is ending)."""

    def __enter__(self) -> object: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def settled(self, outcome: Outcome | None, applied: bool) -> None: ...


#: ``fn(jobs)``: a context manager around storing ``jobs`` that yields the jobs to store.
EnqueueHook = Callable[[list[Job]], AbstractContextManager[list[Job]]]
#: ``fn(job)``: the ``Attempt`` that follows one run of ``job``.
RunHook = Callable[[Job], Attempt]


class Hooks:
    """An App's hooks (see the module docstring). False when there is none: call sites test
    ``if hooks:`` before doing anything."""

    def __init__(self) -> None:
        self._enqueue: list[EnqueueHook] = []
        self._run: list[RunHook] = []

    def __bool__(self) -> bool:
        return bool(self._enqueue or self._run)

    def on_enqueue(self, fn: EnqueueHook) -> EnqueueHook:
        """Wrap every enqueue in ``fn(jobs)`` (after those added before); returns ``fn``."""
        self._enqueue.append(_callable(fn))
        return fn

    def on_run(self, fn: RunHook) -> RunHook:
        """Follow every attempt with ``fn(job)``'s ``Attempt``; returns ``fn``."""
        self._run.append(_callable(fn))
        return fn

    def remove(self, fn: EnqueueHook | RunHook) -> None:
        """Stop calling ``fn`` (as either kind of hook); nothing happens if it was not added.
        Compared by equality, so ``obj.method`` removes what ``obj.method`` added."""
        self._enqueue = [f for f in self._enqueue if f != fn]
        self._run = [f for f in self._run if f != fn]

    @contextlib.contextmanager
    def enqueueing(self, jobs: Sequence[Job]) -> Iterator[list[Job]]:
        """Enter every enqueue hook in turn, each given what the one before yielded; yields the
        jobs to store. An error of the enqueue passes through each hook, last entered first."""
        with contextlib.ExitStack() as stack:
            batch = list(jobs)
            for fn in self._enqueue:
                batch = stack.enter_context(fn(batch))
            yield batch

    def attempt(self, job: Job) -> Attempt:
        """The ``Attempt`` that follows one run of ``job`` through every run hook."""
        return _Attempts(job, self._run)


class _Attempts:
    """Every run hook's ``Attempt`` for one run; a hook that raises is logged and left out."""

    __slots__ = ("_job", "_open", "_run")

    def __init__(self, job: Job, run: Sequence[RunHook]) -> None:
        self._job = job
        self._run = run
        self._open: list[Attempt] = []

    def __enter__(self) -> _Attempts:
        for fn in self._run:
            try:
                attempt = fn(self._job)
                attempt.__enter__()
            except Exception:
                self._failed(fn, "entering")
            else:
                self._open.append(attempt)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for attempt in reversed(self._open):
            try:
                attempt.__exit__(exc_type, exc, tb)
            except Exception:
                self._failed(attempt, "leaving")

    def settled(self, outcome: Outcome | None, applied: bool) -> None:
        for attempt in reversed(self._open):
            try:
                attempt.settled(outcome, applied)
            except Exception:
                self._failed(attempt, "settling")
        self._open.clear()

    def _failed(self, hook: object, step: str) -> None:
        job = self._job
        log.exception(
            "run hook %r raised %s job %s; the job is unaffected", hook, step, job.id,
            extra={"job_id": job.id, "task": job.task, "attempt": job.attempts},
        )  # fmt: skip


def _callable(fn: F) -> F:
    if not callable(fn):
        raise TypeError(f"a hook must be callable, got {type(fn).__name__}")
    return fn
