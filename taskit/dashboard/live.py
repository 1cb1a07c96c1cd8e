"""``/api/live``: Server-Sent Events for the pages that update without a reload.

Every ``TICK`` seconds an ``overview`` event (``taskit.dashboard.views.overview``: the counts,
the chart, workers, running jobs with their progress). Between them, ``progress`` events as
they arrive on the audit stream (``taskit.audit``, when the app publishes it), read with
``Broker.stream_tail`` from where the stream stood when the client connected: no group, nothing
acknowledged, any number of dashboards. Without the audit stream, the running jobs of each
``overview`` event carry the progress (polled).

The stream ends when the client goes (the server's send fails, or Starlette's disconnect watch
cancels it) or when the server stops (``Dashboard.stopping``, checked every ``STEP`` seconds),
so a shutdown never waits for open dashboards.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from taskit import audit
from taskit.broker.base import Broker
from taskit.dashboard import context as web
from taskit.dashboard import views
from taskit.dashboard.context import Dashboard
from taskit.errors import TaskitError
from taskit.events import EventKind

__all__ = ["STEP", "TICK", "events", "stream"]

log = logging.getLogger(__name__)

#: Seconds between overview events, and between checks of the stop flag and the audit stream.
TICK = 1.0
STEP = 0.25
#: Most audit entries read per check.
_TAIL = 500


def sse(event: str, data: Any) -> str:
    """One Server-Sent Event."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def stream(request: Request) -> Response:
    return StreamingResponse(
        events(web.state(request)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def events(dash: Dashboard) -> AsyncIterator[str]:
    """The event stream of one client, until the server stops (or the client goes)."""
    broker = dash.app.broker
    yield "retry: 2000\n\n"
    after = await _tail_start(broker)
    steps = round(TICK / STEP)
    while not dash.stopping:
        try:
            yield sse("overview", await views.overview(broker))
        except (TaskitError, OSError) as exc:  # the broker is down: say so, try again
            yield sse("failure", {"error": str(exc)})
        for _ in range(steps):
            if after is not None:
                found, after = await _progress(broker, after)
                for item in found:
                    yield sse("progress", item)
            await anyio.sleep(STEP)
            if dash.stopping:
                return


async def _tail_start(broker: Broker) -> str | None:
    """Where the audit stream stands now (its newest id; "" when it is empty), or None when
    the broker has no streams."""
    try:
        newest = await broker.stream_tail(audit.STREAM, count=1)
    except NotImplementedError:
        return None
    except (TaskitError, OSError) as exc:
        log.debug("the audit stream cannot be read (%s): progress is polled", exc)
        return None
    return newest[-1][0] if newest else ""


async def _progress(broker: Broker, after: str) -> tuple[list[dict[str, Any]], str]:
    try:  # an empty stream at the start: everything in it now is new
        entries = await broker.stream_tail(audit.STREAM, after=after or None, count=_TAIL)
    except (TaskitError, OSError):
        return [], after
    found = []
    for entry_id, raw in entries:
        after = entry_id
        try:
            event = audit.decode(raw)
        except ValueError:
            continue
        if event.kind is EventKind.PROGRESS and event.progress is not None:
            fraction = event.progress.fraction
            found.append({
                "id": event.job_id, "task": event.task, "queue": event.queue,
                "percent": None if fraction is None else round(fraction * 100),
                "message": event.progress.message,
            })  # fmt: skip
    return found, after
