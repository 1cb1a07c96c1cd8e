"""The dashboard's pages (``GET``): each reads what it shows in O(page) broker calls and renders
its template. The DOM contract the browser tests rely on is in the templates (docs/dashboard.md).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from taskit.broker.browse import Listing
from taskit.dashboard import context as web
from taskit.dashboard import views
from taskit.errors import CorruptJobError
from taskit.job import Job, JobStatus
from taskit.presence import live_workers
from taskit.workflow import WorkflowState

__all__ = ["ROUTES"]

#: Jobs per page of a listing.
PAGE = 50
#: The live states a job's cancel applies to; promote's; the finished ones requeue/delete take.
_CANCELLABLE = {JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING, JobStatus.RUNNING,
                JobStatus.DEFERRED}  # fmt: skip
_PROMOTABLE = {JobStatus.SCHEDULED, JobStatus.RETRYING}
#: States whose first page the workflows page reads for the workflow ids of live jobs.
_LIVE = (Listing.RUNNING, Listing.QUEUED, Listing.DEFERRED)


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


async def overview(request: Request) -> Response:
    data = await views.overview(web.state(request).app.broker)
    # "<" escaped: the JSON sits in a <script> element, which a task name must not end.
    embedded = json.dumps(data).replace("<", "\\u003c")
    return web.render(request, "overview", {"data": data, "data_json": embedded})


async def api_overview(request: Request) -> Response:
    return JSONResponse(await views.overview(web.state(request).app.broker))


async def queues(request: Request) -> Response:
    broker = web.state(request).app.broker
    stats = await broker.stats()
    paused = await broker.paused_queues()
    rows = [
        {"name": name, "paused": name in paused, "stats": msgspec.to_builtins(s)}
        for name, s in sorted(stats.items())
    ]
    return web.render(request, "queues", {"rows": rows})


async def _listing(request: Request, page: str, listing: Listing | None) -> Response:
    broker = web.state(request).app.broker
    queue, task, text = _text(request, "queue"), _text(request, "task"), _text(request, "q")
    cursor = _text(request, "cursor")
    if listing is None:
        try:
            listing = Listing(request.query_params.get("state") or "queued")
        except ValueError:
            return _error(request, f"unknown state {request.query_params.get('state')!r}")
    if text is not None and cursor is None:
        found = await _get(request, text)
        if found is not None:
            return RedirectResponse(f"{web.base(request)}/jobs/{found.id}", 303)
    names = sorted(await broker.stats())
    try:
        jobs, after = await views.walk(
            broker, [queue] if queue else names, listing, cursor=cursor, limit=PAGE, task=task,
            text=text,
        )  # fmt: skip
    except ValueError as exc:
        return _error(request, str(exc))
    filters = {"queue": queue or "", "state": listing.value, "task": task or "", "q": text or ""}
    return web.render(request, page, {
        "jobs": jobs, "cursor": after, "queues": names, "states": [s.value for s in Listing],
        "filters": filters, "next_query": _query({**filters, "cursor": after or ""}),
    })  # fmt: skip


def _query(params: dict[str, str]) -> str:
    return urlencode({k: v for k, v in params.items() if v})


async def jobs(request: Request) -> Response:
    return await _listing(request, "jobs", None)


async def dead(request: Request) -> Response:
    return await _listing(request, "dead", Listing.DEAD)


async def _get(request: Request, job_id: str) -> Job | None:
    try:
        return await web.state(request).app.broker.get(job_id)
    except CorruptJobError:
        return None


async def job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    found = await _get(request, job_id)
    if found is None:
        return _error(request, f"no job {job_id!r} (never existed, or its record expired)", 404)
    status = found.status
    actions = [
        name
        for name, ok in (
            ("cancel", status in _CANCELLABLE),
            ("promote", status in _PROMOTABLE),
            ("requeue", status.finished),
            ("delete", status.finished),
        )
        if ok
    ]
    return web.render(request, "job", {
        "job": found, "args": _json({"args": _args(found)[0], "kwargs": _args(found)[1]}),
        "result": None if found.result is None else _json(found.result.value),
        "progress": views.progress_of(found) if found.progress else None,
        "actions": actions,
    })  # fmt: skip


def _args(job: Job) -> tuple[Any, Any]:
    try:
        return job.args, job.kwargs
    except (ValueError, TypeError, msgspec.DecodeError) as exc:
        return f"(arguments do not decode: {exc})", {}


def _json(value: Any) -> str:
    return json.dumps(msgspec.to_builtins(value), indent=2, default=repr, ensure_ascii=False)


async def workers(request: Request) -> Response:
    found = await live_workers(web.state(request).app.broker)
    return web.render(request, "workers", {"workers": [views.worker_row(w) for w in found]})


async def schedules(request: Request) -> Response:
    dash = web.state(request)
    now = time.time()
    rows = []
    for s in sorted(dash.app.schedules.values(), key=lambda s: s.name):
        last = s.timing.latest(now)
        ran = await _get(request, s.claim_key(last))
        rows.append({
            "name": s.name, "task": s.task, "when": s.cron or f"every {s.every:g} s",
            "next": views.when(s.timing.after(now)), "last": views.when(last),
            "last_job": ran,
        })  # fmt: skip
    return web.render(request, "schedules", {"rows": rows})


async def limits(request: Request) -> Response:
    broker = web.state(request).app.broker
    specs = await broker.limit_specs()
    rows = []
    for name in sorted(specs):
        usage = await broker.limit_usage(name, top=10)
        rows.append({"name": name, "spec": specs[name], "usage": usage,
                     "in_use": sum(usage.running.values()),
                     "waiting": sum(usage.waiting.values())})  # fmt: skip
    return web.render(request, "limits", {"rows": rows})


async def workflows(request: Request) -> Response:
    broker = web.state(request).app.broker
    wanted = _text(request, "id")
    if wanted is not None:
        if await broker.workflow(wanted) is not None:
            return RedirectResponse(f"{web.base(request)}/workflows/{wanted}", 303)
        return _error(request, f"no workflow {wanted!r} (never existed, or expired)", 404)
    names = sorted(await broker.stats())
    seen: dict[str, str] = {}
    for listing in _LIVE:
        found, _ = await views.walk(broker, names, listing, limit=PAGE)
        for j in found:
            if j.workflow is not None:
                seen.setdefault(j.workflow, listing.value)
    return web.render(request, "workflows", {"seen": seen})


async def workflow(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    found = await web.state(request).app.broker.workflow(workflow_id)
    if found is None:
        return _error(request, f"no workflow {workflow_id!r} (never existed, or expired)", 404)
    return web.render(request, "workflow", {"flow": found, "rows": _tree(found)})


def _tree(flow: WorkflowState) -> list[dict[str, Any]]:
    """The nodes in order, each with its depth (the longest chain of parents above it) and
    the numbers of the nodes it waits for: drawn indented, a tree of nodes."""
    order = {n.id: i for i, n in enumerate(flow.nodes)}
    depth: dict[str, int] = {}
    for node in flow.nodes:  # parents come before their children in enqueue order
        depth[node.id] = 1 + max((depth.get(p, -1) for p in node.after), default=-1)
    return [
        {"node": n, "depth": depth[n.id], "number": order[n.id],
         "after": [f"#{order[p]}" if p in order else p for p in n.after]}
        for n in flow.nodes
    ]  # fmt: skip


async def progress(request: Request) -> Response:
    broker = web.state(request).app.broker
    running = await views.running_jobs(broker, sorted(await broker.stats()))
    return web.render(request, "progress", {"running": running})


def _error(request: Request, message: str, status: int = 400) -> Response:
    return web.render(request, "error", {"message": message}, status)


ROUTES = [
    Route("/", overview, name="overview"),
    Route("/api/overview", api_overview, name="api_overview"),
    Route("/queues", queues, name="queues"),
    Route("/jobs", jobs, name="jobs"),
    Route("/jobs/{job_id:path}", job, name="job"),
    Route("/dead", dead, name="dead"),
    Route("/workers", workers, name="workers"),
    Route("/schedules", schedules, name="schedules"),
    Route("/limits", limits, name="limits"),
    Route("/workflows", workflows, name="workflows"),
    Route("/workflows/{workflow_id:path}", workflow, name="workflow"),
    Route("/progress", progress, name="progress"),
]
