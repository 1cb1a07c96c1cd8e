"""Job lifecycle events: the hook for audit logs, alerts, metrics and tracing.

    @app.on(EventKind.FAILED, EventKind.DEAD_LETTERED)
    async def alert(event: JobEvent) -> None:
        await pager.send(f"{event.task} {event.kind}: {event.error}")

    @app.on()                      # every kind
    def audit(event: JobEvent) -> None:
        audit_log.write(event.to_builtins())

| kind            | emitted by           | when                                                    |
|-----------------|----------------------|---------------------------------------------------------|
| created         | the enqueuer         | a job was stored (not for a unique id already waiting)  |
| started         | the worker           | an attempt begins                                       |
| retried         | the worker           | an attempt failed and another is due after ``delay``    |
| completed       | the worker           | the handler succeeded                                   |
| failed          | the worker           | an expected failure (``Fail``, unsuccessful result)     |
| dead_lettered   | the worker           | retries spent, or the job cannot run here               |
| cancelled       | worker or canceller  | a waiting job was cancelled, or a running one stopped   |
| requeued        | worker or admin      | a dead letter was requeued, or shutdown handed it back  |
| progress        | the worker           | a running job's reported progress was stored (coalesced:|
|                 |                      | at most once per ``progress_interval``, and as it ends) |

Events are emitted in the process where the transition happens, after the broker applied it.
Subscribers run one after another on the event loop: ``async def`` ones are awaited, plain ones
called directly (so they must not block: hand slow work to a queue or a thread). A subscriber that
raises is logged and skipped; it never changes what happens to the job. With no subscriber,
emitting costs one truth test.
"""

from __future__ import annotations

import enum
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import msgspec

from taskit.job import Job, JobStatus, Lease, Outcome, OutcomeKind, Progress

__all__ = ["EventKind", "Events", "JobEvent", "Subscriber", "WorkerEvents"]

log = logging.getLogger(__name__)

#: How long a stopping worker keeps delivering the events it already posted.
DRAIN_TIMEOUT = 5.0


class EventKind(enum.StrEnum):
    """What happened to a job (see the module docstring)."""

    CREATED = "created"
    STARTED = "started"
    RETRIED = "retried"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"
    REQUEUED = "requeued"
    PROGRESS = "progress"


_OF_OUTCOME = {
    OutcomeKind.COMPLETE: EventKind.COMPLETED,
    OutcomeKind.FAIL: EventKind.FAILED,
    OutcomeKind.RETRY: EventKind.RETRIED,
    OutcomeKind.DEAD_LETTER: EventKind.DEAD_LETTERED,
    OutcomeKind.CANCEL: EventKind.CANCELLED,
    OutcomeKind.RELEASE: EventKind.REQUEUED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    """One transition of one job. ``at`` is when it was emitted; ``attempt`` counts runs started
    (0 before the first). ``duration`` (seconds the attempt ran), ``delay`` (seconds until the
    retry), ``error``, ``error_type`` and ``traceback`` (the failure as text: the message, the
    exception's qualified type name, the formatted traceback; see ``taskit.job.describe_error``)
    are set where they apply; ``worker`` names the worker that emitted it."""

    kind: EventKind
    job_id: str
    task: str
    queue: str
    attempt: int
    at: datetime
    created_at: datetime
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    created_by: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    duration: float | None = None
    delay: float | None = None
    error: str | None = None
    error_type: str | None = None
    worker: str | None = None
    traceback: str | None = None
    #: The progress stored, on a ``progress`` event (``Job.progress``).
    progress: Progress | None = None

    def to_builtins(self) -> dict[str, Any]:
        """A JSON-friendly dict (times as ISO 8601 strings)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["metadata"] = dict(self.metadata)
        if self.progress is not None:
            data["progress"] = msgspec.to_builtins(self.progress)
        return data


#: ``fn(event)``, sync or async.
Subscriber = Callable[[JobEvent], "Awaitable[None] | None"]
S = TypeVar("S", bound=Subscriber)


class Events:
    """An App's subscribers, and the emitting side used by the worker, the App and the CLI.

    False when nobody subscribes: call sites test ``if events:`` before building anything."""

    def __init__(self) -> None:
        self._subs: dict[EventKind, list[tuple[Subscriber, bool]]] = {}

    def __bool__(self) -> bool:
        return bool(self._subs)

    def subscribe(self, fn: S, kinds: Iterable[EventKind | str] = ()) -> S:
        """Call ``fn(event)`` for each event of ``kinds`` (every kind when empty); returns ``fn``.
        Raises ``ValueError`` for an unknown kind and ``TypeError`` if ``fn`` is not callable."""
        if not callable(fn):
            raise TypeError(f"a subscriber must be callable, got {type(fn).__name__}")
        chosen = list(kinds) or list(EventKind)
        try:
            wanted = [EventKind(kind) for kind in chosen]
        except ValueError:
            known = ", ".join(k.value for k in EventKind)
            raise ValueError(f"unknown event kind in {chosen!r}; known: {known}") from None
        call = getattr(fn, "__call__", None)  # noqa: B004 - async callable objects count too
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
        for kind in dict.fromkeys(wanted):
            self._subs.setdefault(kind, []).append((fn, is_async))
        return fn

    def unsubscribe(self, fn: Subscriber) -> None:
        """Stop calling ``fn`` (for every kind it was subscribed to)."""
        for kind in list(self._subs):
            self._subs[kind] = [(f, a) for f, a in self._subs[kind] if f is not fn]
            if not self._subs[kind]:
                del self._subs[kind]

    async def emit(self, event: JobEvent) -> None:
        """Call each subscriber of ``event.kind``; one that raises is logged and skipped."""
        for fn, is_async in self._subs.get(event.kind, ()):
            try:
                if is_async:
                    await fn(event)  # type: ignore[misc]
                else:
                    outcome = fn(event)
                    if inspect.isawaitable(outcome):
                        await outcome
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException:  # user code: even SystemExit must not end the worker
                log.exception(
                    "event subscriber %r raised on %s of job %s; the job is unaffected",
                    fn, event.kind.value, event.job_id,
                    extra={"job_id": event.job_id, "task": event.task, "event": event.kind.value},
                )  # fmt: skip

    # -- what the rest of taskit calls (after testing ``if events:``) --------------------------
    async def job(self, kind: EventKind, job: Job, **details: Any) -> None:
        """Emit ``kind`` for ``job``; ``details`` fill the optional JobEvent fields."""
        if kind in self._subs:
            await self.emit(_event(kind, job, **details))

    async def created(self, sent: Sequence[Job], stored: Sequence[Job]) -> None:
        """After an enqueue: ``created`` for each job stored anew. A unique id that was already
        waiting comes back as the stored job, with its own (earlier) ``created_at``; a job a
        dedup window kept instead comes back as a ``KeptJob`` (``duplicate``)."""
        for mine, kept in zip(sent, stored, strict=True):
            if kept.created_at == mine.created_at and not kept.duplicate:
                await self.job(EventKind.CREATED, kept)

    async def after_cancel(self, job: Job | None) -> None:
        """After ``cancel`` answered True: ``cancelled`` if the job ended at once (a running one
        is reported by its worker when it stops)."""
        if job is not None and job.status is JobStatus.CANCELLED:
            await self.job(EventKind.CANCELLED, job)


class WorkerEvents:
    """A worker's side: ``started``/``settled``/``reclaimed`` post events without waiting, and
    ``run`` (one task of the worker's) delivers them in order, so a slow subscriber never holds
    up a job. ``close`` delivers what is left (for up to ``DRAIN_TIMEOUT`` seconds)."""

    def __init__(self, events: Events, worker: str) -> None:
        self._events = events
        self._worker = worker
        self._send, self._receive = anyio.create_memory_object_stream[JobEvent](math.inf)
        self._done = anyio.Event()
        self._closed = False

    def started(self, job: Job) -> None:
        self._post(EventKind.STARTED, job)

    def settled(self, job: Job, outcome: Outcome, duration: float | None) -> None:
        """After the broker applied ``outcome`` of ``job`` (``duration``: seconds it ran)."""
        self._post(
            _OF_OUTCOME[outcome.kind], job, duration=duration, error=outcome.error,
            error_type=outcome.error_type, traceback=outcome.traceback,
            delay=outcome.delay if outcome.kind is OutcomeKind.RETRY else None,
        )  # fmt: skip

    def progress(self, job: Job, progress: Progress) -> None:
        """After the broker stored ``progress`` of running ``job``."""
        self._post(EventKind.PROGRESS, job, progress=progress)

    def reclaimed(
        self, leases: Sequence[Lease], outcomes: Sequence[Outcome], applied: Sequence[bool]
    ) -> None:
        """After the reaper settled expired leases (retried or dead-lettered)."""
        for lease, outcome, ok in zip(leases, outcomes, applied, strict=True):
            if ok:
                self.settled(lease.job, outcome, None)

    def _post(self, kind: EventKind, job: Job, **details: Any) -> None:
        if kind in self._events._subs and not self._closed:
            self._send.send_nowait(_event(kind, job, worker=self._worker, **details))

    async def run(self) -> None:
        try:
            async with self._receive:
                async for event in self._receive:
                    await self._events.emit(event)
        finally:
            self._done.set()

    async def close(self) -> None:
        self._closed = True
        self._send.close()
        with anyio.move_on_after(DRAIN_TIMEOUT):
            await self._done.wait()


def _event(kind: EventKind, job: Job, **details: Any) -> JobEvent:
    return JobEvent(
        kind=kind, job_id=job.id, task=job.task, queue=job.queue, attempt=job.attempts,
        at=datetime.now(UTC), created_at=job.created_at, scheduled_at=job.scheduled_at,
        started_at=job.started_at, created_by=job.created_by,
        metadata=MappingProxyType(job.metadata), **details,
    )  # fmt: skip
