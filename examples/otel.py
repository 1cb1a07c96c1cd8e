"""Tracing with OpenTelemetry: a job's runs join the trace of the request that enqueued it.

Needs the otel extra and an SDK (in production, with an exporter such as OTLP's):

    pip install 'taskit[otel]' opentelemetry-sdk
    python examples/otel.py

This example keeps the spans in memory and prints each trace as a tree. Both the process that
enqueues and the worker's must call ``taskit.otel.instrument(app)``: here they are one process.
"""

from __future__ import annotations

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import taskit.otel
from taskit import App

app = App("memory://")

# In an application: provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter())) and
# trace.set_tracer_provider(provider) once at start-up; instrument(app) then needs no argument.
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
tracer = trace.get_tracer("shop", tracer_provider=provider)

taskit.otel.instrument(app, tracer_provider=provider)

tries: dict[str, int] = {}


@app.task(name="ship", max_retries=2, backoff=0.0)
async def ship(order: str) -> str:
    """Fails once, then ships: each attempt is a span of its own, in the same trace."""
    tries[order] = tries.get(order, 0) + 1
    with tracer.start_as_current_span("call carrier"):  # nests under the attempt's span
        if tries[order] == 1:
            raise ConnectionError("carrier API timed out")
    return f"{order} shipped"


async def checkout(order: str) -> None:
    """What a web request does: its span is the parent of the job's."""
    with tracer.start_as_current_span(f"POST /orders/{order}"):
        await ship.enqueue(order)


def show(span: ReadableSpan, children: dict[int, list[ReadableSpan]], depth: int) -> None:
    attrs = dict(span.attributes or {})
    notes = [span.kind.name.lower()]
    if "taskit.outcome" in attrs:
        notes.append(f"attempt={attrs['taskit.attempt']} outcome={attrs['taskit.outcome']}")
    if span.status.description:
        notes.append(f"error: {span.status.description}")
    print(f"{'  ' * depth}{span.name} ({', '.join(notes)})")
    assert span.context is not None
    for child in children.get(span.context.span_id, []):
        show(child, children, depth + 1)


async def main() -> None:
    await checkout("A-17")
    await app.worker().run(burst=True)
    finished = sorted(spans.get_finished_spans(), key=lambda s: s.start_time or 0)
    children: dict[int, list[ReadableSpan]] = {}
    for span in finished:
        if span.parent is not None:
            children.setdefault(span.parent.span_id, []).append(span)
    for root in (s for s in finished if s.parent is None):
        assert root.context is not None
        print(f"trace {root.context.trace_id:032x}")
        show(root, children, 1)


if __name__ == "__main__":
    anyio.run(main)
