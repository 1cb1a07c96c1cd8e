"""``/api/live``: an ``overview`` event at once, ``progress`` events from the audit stream as they
arrive, and a stream that ends when the server stops."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from taskit import audit
from taskit.dashboard import live
from taskit.events import EventKind, JobEvent
from taskit.job import Progress
from tests.dashboard._site import Site


def test_the_stream_sends_an_overview_then_progress_from_the_audit_stream() -> None:
    with Site() as site:
        job = site.running(1, 2)
        with site.client.stream("GET", "/api/live") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert "server-timing" in response.headers
            lines = response.iter_lines()
            event, data = next_event(lines)
            assert event == "overview"
            assert data["stats"]["running"] == "1"
            assert [r["id"] for r in data["running"]] == [job.id]
            progress = Progress(updated_at=datetime.now(UTC), fraction=0.4, message="rows")
            entry = audit.encode(JobEvent(
                kind=EventKind.PROGRESS, job_id=job.id, task=job.task, queue=job.queue,
                attempt=1, at=datetime.now(UTC), created_at=job.created_at, progress=progress,
            ))  # fmt: skip
            site.run(lambda: site.broker.stream_add(audit.STREAM, entry, maxlen=100))
            while event != "progress":
                event, data = next_event(lines)
            assert data == {"id": job.id, "task": "add", "queue": "default", "percent": 40,
                            "message": "rows"}  # fmt: skip


def next_event(lines: Iterator[str]) -> tuple[str, dict[str, Any]]:
    event = ""
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event:
            return event, json.loads(line[6:])
    raise AssertionError("the stream ended")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_stream_ends_once_the_server_stops() -> None:
    site = Site()
    dash = site.web.state.dashboard
    stream = live.events(dash)
    assert await anext(stream) == "retry: 2000\n\n"
    assert (await anext(stream)).startswith("event: overview\n")
    dash.stopping = True
    with anyio.fail_after(2 * live.TICK):
        rest = [chunk async for chunk in stream]
    assert rest == []
