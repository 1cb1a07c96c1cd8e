"""taskit.otel with the OpenTelemetry SDK's in-memory exporter, on the memory broker and the real
Redis: the producer span of an enqueue, the consumer span of each run as its child (the trace
context travels in the job's metadata), the settle span, the attributes, failures recorded on
the span, and ``import taskit`` without OpenTelemetry installed."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence

import anyio
import anyio.to_thread
import pytest
import redis.asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import taskit.otel
from taskit import App, Fail, MemoryBroker, Settings
from taskit.broker.redis import RedisBroker
from taskit.job import Job

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        ("memory", "asyncio"),
        ("memory", "trio"),
        pytest.param(("redis", "asyncio"), marks=pytest.mark.redis),  # RedisBroker: asyncio only
    ],
    ids=["memory-asyncio", "memory-trio", "redis"],
)
def where(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The broker and the event loop a test runs on."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(where: tuple[str, str]) -> str:
    return where[1]


@pytest.fixture
async def app(where: tuple[str, str], request: pytest.FixtureRequest) -> AsyncIterator[App]:
    if where[0] == "memory":
        made = App(MemoryBroker())
        yield made
        return
    redis_url: str = request.getfixturevalue("redis_url")
    broker = RedisBroker(redis_url, prefix=f"i13-observe-{uuid.uuid4().hex[:10]}")
    made = App(broker, settings=Settings())
    try:
        yield made
    finally:
        client = redis.asyncio.Redis.from_url(redis_url)
        doomed = [key async for key in client.scan_iter(match=broker.keys.pattern(), count=500)]
        if doomed:
            await client.delete(*doomed)
        await client.aclose()
        await made.close()


@pytest.fixture
def exporter(app: App) -> InMemorySpanExporter:
    """Spans of ``app``, traced through a provider of the test's own (not the global one)."""
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    taskit.otel.instrument(app, tracer_provider=provider)
    return found


def named(spans: Sequence[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def test_a_run_is_the_child_of_its_enqueue_in_the_callers_trace(
    app: App, exporter: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("test", tracer_provider=TracerProvider())
    inner: list[int] = []

    @app.task(name="double")
    async def double(x: int) -> int:
        inner.append(trace.get_current_span().get_span_context().span_id)
        return 2 * x

    with tracer.start_as_current_span("request") as request:
        job = await double.enqueue(21)
    await app.worker(name="w1").run(burst=True)

    spans = exporter.get_finished_spans()
    [send], [process], [settle] = (named(spans, p) for p in ("send", "process", "settle"))
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (send, process, settle) if s.context} == {trace_id}
    assert parent_of(send) == request.get_span_context().span_id
    assert parent_of(process) == span_id(send)
    assert parent_of(settle) == span_id(process)
    assert inner == [span_id(process)]  # current while the handler ran
    assert (send.kind, process.kind, settle.kind) == (
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.CLIENT,
    )
    assert (send.name, process.name, settle.name) == (
        "send default",
        "process default",
        "settle default",
    )
    assert send.attributes is not None
    assert process.attributes is not None
    assert dict(process.attributes) == {
        "messaging.system": "taskit",
        "messaging.destination.name": "default",
        "messaging.message.id": job.id,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "taskit.task": "double",
        "taskit.attempt": 1,
        "taskit.outcome": "complete",
    }
    assert send.attributes["messaging.message.id"] == job.id
    assert send.attributes["messaging.operation.type"] == "send"
    assert settle.attributes is not None
    assert settle.attributes["taskit.applied"] is True
    assert process.status.status_code is StatusCode.UNSET
    # the context travelled in the job, where anyone can read it
    stored = await app.get_job(job.id)
    assert stored is not None
    _version, trace_hex, parent_hex, _ = stored.metadata["traceparent"].split("-")
    assert (int(trace_hex, 16), int(parent_hex, 16)) == (trace_id, span_id(send))


async def test_a_sync_handler_sees_the_run_span_in_its_thread(
    app: App, exporter: InMemorySpanExporter
) -> None:
    seen: list[int] = []

    @app.task(name="in_thread")
    def in_thread() -> None:
        seen.append(trace.get_current_span().get_span_context().span_id)

    await in_thread.enqueue()
    await app.worker().run(burst=True)
    [process] = named(exporter.get_finished_spans(), "process")
    assert seen == [span_id(process)]


async def test_failures_are_recorded_on_each_attempts_span(
    app: App, exporter: InMemorySpanExporter
) -> None:
    @app.task(name="broken", max_retries=1, backoff=0.0)
    async def broken() -> None:
        raise ValueError("disk on fire")

    @app.task(name="refused")
    async def refused() -> None:
        raise Fail("not today")

    await broken.enqueue()
    await refused.enqueue()
    await app.worker().run(burst=True)

    spans = named(exporter.get_finished_spans(), "process")
    by_outcome = {(s.attributes or {})["taskit.outcome"]: s for s in spans}
    assert sorted(by_outcome) == ["dead_letter", "fail", "retry"]
    for outcome, error_type in [
        ("retry", "ValueError"),
        ("dead_letter", "ValueError"),
        ("fail", "taskit.errors.Fail"),
    ]:
        span = by_outcome[outcome]
        assert span.status.status_code is StatusCode.ERROR, outcome
        assert (span.attributes or {})["error.type"].endswith(error_type.rpartition(".")[2])
        [event] = [e for e in span.events if e.name == "exception"]
        assert event.attributes is not None
        assert event.attributes["exception.message"] in ("disk on fire", "not today")
    trace_ids = {
        s.context.trace_id
        for s in spans
        if (s.attributes or {})["taskit.task"] == "broken" and s.context
    }
    assert len(trace_ids) == 1  # both attempts of one job: one trace, children of one enqueue
    stack = dict(by_outcome["retry"].events[0].attributes or {})["exception.stacktrace"]
    assert "disk on fire" in str(stack)


async def test_a_sync_enqueue_carries_the_context_of_its_own_thread(
    app: App, exporter: InMemorySpanExporter
) -> None:
    @app.task(name="noop")
    async def noop() -> None:
        return None

    tracer = trace.get_tracer("test", tracer_provider=TracerProvider())

    def from_a_thread() -> tuple[Job, int]:
        with tracer.start_as_current_span("view") as view:
            return noop.enqueue_sync(), view.get_span_context().trace_id

    job, trace_id = await anyio.to_thread.run_sync(from_a_thread)
    await app.worker().run(burst=True)
    [send] = named(exporter.get_finished_spans(), "send")
    assert send.context is not None
    assert send.context.trace_id == trace_id
    assert job.metadata["traceparent"].split("-")[1] == f"{trace_id:032x}"


async def test_an_enqueue_that_fails_ends_its_span_with_the_error(
    exporter: InMemorySpanExporter, app: App
) -> None:
    @app.task(name="noop")
    async def noop() -> None:
        return None

    class Down(MemoryBroker):
        async def enqueue(
            self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
        ) -> list[Job]:
            raise ConnectionError("broker down")

    app.broker = Down()
    with pytest.raises(ConnectionError):
        await noop.enqueue()
    [send] = exporter.get_finished_spans()
    assert send.status.status_code is StatusCode.ERROR
    assert (send.attributes or {})["error.type"] == "ConnectionError"


async def test_remove_stops_tracing(app: App) -> None:
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    done = taskit.otel.instrument(app, tracer_provider=provider)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    done.remove()
    job = await noop.enqueue()
    await app.worker().run(burst=True)
    assert found.get_finished_spans() == ()
    assert "traceparent" not in job.metadata
    assert not app.hooks


def test_taskit_imports_without_opentelemetry_and_the_module_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"  # as if it were not installed
        "import taskit, taskit.app, taskit.worker, taskit.hooks\n"
        "taskit.App('memory://')\n"
        "try:\n"
        "    import taskit.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'taskit[otel]'" in done.stdout
