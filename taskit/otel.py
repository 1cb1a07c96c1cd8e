"""OpenTelemetry tracing for an App: ``pip install 'taskit[otel]'``, then one call.

    import taskit.otel

    taskit.otel.instrument(app)            # the global tracer provider, or tracer_provider=...

Every enqueue, in the process that enqueues, opens one ``send`` span (kind PRODUCER) per job as
a child of the current span, and stores that span's context in the job's metadata (W3C
``traceparent``, with ``tracestate`` and ``baggage`` when set; through the configured
propagator). Every attempt, in the worker, opens a ``process`` span (kind CONSUMER) whose parent
is that context, so a job's runs join the trace of the request that enqueued it. The span is
current while the handler runs (its own spans nest under it) and ends when the broker has
settled the attempt; a ``settle`` child span (kind CLIENT) covers the time from the handler's
end to the broker's answer.

Attributes follow OpenTelemetry's messaging conventions where they fit: ``messaging.system``
``taskit``, ``messaging.destination.name`` the queue, ``messaging.message.id`` the job id,
``messaging.operation.type`` / ``.name``; and taskit's own: ``taskit.task``, ``taskit.attempt``
and, once settled, ``taskit.outcome`` (``complete``, ``retry``, ``fail``, ...). A failed attempt
(fail, retry, dead letter) sets the span's status to ERROR, ``error.type`` to the exception's
type and records an ``exception`` event with its message and traceback.

Only the API (``opentelemetry-api``) is needed; without it, importing this module raises an
``ImportError`` that names the extra (``import taskit`` never needs it). Nothing is patched:
``instrument`` adds two hooks to this App (``taskit.hooks``) and ``Instrumentation.remove``
takes them away. The process that runs the worker must have the App instrumented as well.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
except ImportError as exc:  # pragma: no cover - tested in a subprocess without the package
    raise ImportError(
        "taskit.otel needs OpenTelemetry: install taskit's otel extra (pip install 'taskit[otel]')"
    ) from exc

import msgspec

from taskit.job import Job, Outcome, OutcomeKind

if TYPE_CHECKING:
    from taskit.app import App

__all__ = ["SYSTEM", "Instrumentation", "instrument"]

#: ``messaging.system`` of every span.
SYSTEM = "taskit"
_FAILED = (OutcomeKind.FAIL, OutcomeKind.RETRY, OutcomeKind.DEAD_LETTER)


def instrument(app: App, *, tracer_provider: TracerProvider | None = None) -> Instrumentation:
    """Trace ``app``'s enqueues and runs (see the module docstring), with a tracer from
    ``tracer_provider`` (default: the global one, as set by ``trace.set_tracer_provider``).
    Returns the ``Instrumentation``; its ``remove()`` undoes this."""
    tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
    done = Instrumentation(app, tracer)
    app.hooks.on_enqueue(done.enqueueing)
    app.hooks.on_run(done.attempt)
    return done


class Instrumentation:
    """The hooks ``instrument`` added to one App."""

    def __init__(self, app: App, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    def remove(self) -> None:
        """Stop tracing the App (spans already open still end)."""
        self.app.hooks.remove(self.enqueueing)
        self.app.hooks.remove(self.attempt)

    @contextlib.contextmanager
    def enqueueing(self, jobs: list[Job]) -> Iterator[list[Job]]:
        """The enqueue hook: a ``send`` span per job, its context stored in the job."""
        spans = [self._send_span(job, len(jobs)) for job in jobs]
        stamped = [_with_context(job, span) for job, span in zip(jobs, spans, strict=True)]
        try:
            yield stamped
        except BaseException as exc:
            for span in spans:
                _record_error(span, type(exc).__qualname__, str(exc))
                span.record_exception(exc)
            raise
        finally:
            for span in spans:
                span.end()

    def attempt(self, job: Job) -> _Attempt:
        """The run hook: a ``process`` span around one attempt of ``job``."""
        return _Attempt(self.tracer, job)

    def _send_span(self, job: Job, batch: int) -> Span:
        attributes = {**_attributes(job, "send", "send"), "taskit.attempt": job.attempts}
        if batch > 1:
            attributes["messaging.batch.message_count"] = batch
        return self.tracer.start_span(
            f"send {job.queue}", kind=SpanKind.PRODUCER, attributes=attributes
        )


class _Attempt:
    """One attempt's ``process`` span: current while the handler runs, ended once settled."""

    __slots__ = ("_ended_run", "_job", "_span", "_token", "_tracer")

    def __init__(self, tracer: Tracer, job: Job) -> None:
        self._tracer = tracer
        self._job = job
        parent = propagate.extract(_carrier(job.metadata))
        self._span = tracer.start_span(
            f"process {job.queue}", context=parent, kind=SpanKind.CONSUMER,
            attributes={**_attributes(job, "process", "process"), "taskit.attempt": job.attempts},
        )  # fmt: skip
        self._token: object = None
        self._ended_run = 0

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        self._ended_run = time.time_ns()
        if exc is not None:  # the worker itself was stopped: no settle will follow
            self._span.set_attribute("taskit.outcome", "interrupted")
            self._span.record_exception(exc)
            self._span.end()

    def settled(self, outcome: Outcome | None, applied: bool) -> None:
        span, job = self._span, self._job
        kind = outcome.kind.value if outcome is not None else "lease_lost"
        settle = self._tracer.start_span(
            f"settle {job.queue}", context=trace.set_span_in_context(span),
            kind=SpanKind.CLIENT, start_time=self._ended_run or None,
            attributes={**_attributes(job, "settle", kind), "taskit.applied": applied},
        )  # fmt: skip
        if not applied:
            settle.set_status(Status(StatusCode.ERROR, "the broker did not apply the outcome"))
        settle.end()
        span.set_attribute("taskit.outcome", kind)
        if outcome is not None and outcome.kind in _FAILED:
            _record_error(span, outcome.error_type or "Exception", outcome.error or "")
            span.add_event(
                "exception",
                {
                    "exception.type": outcome.error_type or "Exception",
                    "exception.message": outcome.error or "",
                    "exception.stacktrace": outcome.traceback or "",
                },
            )
        span.end()


def _attributes(job: Job, operation_type: str, operation: str) -> dict[str, str | int]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": job.queue,
        "messaging.message.id": job.id,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation,
        "taskit.task": job.task,
    }


def _record_error(span: Span, error_type: str, message: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"))


def _with_context(job: Job, span: Span) -> Job:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    if not carrier:  # a no-op propagator: nothing to carry
        return job
    return msgspec.structs.replace(job, metadata={**job.metadata, **carrier})


def _carrier(metadata: dict[str, object]) -> dict[str, str]:
    """The metadata's string values: what a propagator may read."""
    return {k: v for k, v in metadata.items() if isinstance(v, str)}
