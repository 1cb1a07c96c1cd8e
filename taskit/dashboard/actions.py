"""The dashboard's actions: ``POST`` with a JSON body and the ``X-CSRF-Token`` header. Each
replies ``{"ok": true, "message": ...}`` (200) or ``{"ok": false, "error": ...}`` (4xx); a
read-only dashboard refuses them all (403), and so does a failed CSRF check
(``taskit.dashboard.security.check_action``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskit._ids import new_job_id
from taskit.broker.base import Broker
from taskit.broker.browse import MAX_PAGE, Listing
from taskit.dashboard import context as web
from taskit.dashboard.security import check_action
from taskit.errors import CorruptJobError
from taskit.job import LIVE_FIELDS, Job, JobStatus

__all__ = ["ROUTES", "requeue_copy"]

#: Most ids one bulk action takes by selection.
MAX_IDS = 10_000

Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


class Refused(Exception):
    """An action refused: ``status`` and the error the reply says."""

    def __init__(self, error: str, status: int = 400) -> None:
        super().__init__(error)
        self.status = status


def _ok(message: str, **more: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "message": message, **more})


def action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The checks every action passes first: not read-only, CSRF, a JSON object body."""

    async def checked(request: Request) -> Response:
        dash = web.state(request)
        if dash.read_only:
            return JSONResponse({"ok": False, "error": "this dashboard is read-only"}, 403)
        refused = check_action(request, dash.secret)
        if refused is not None:
            return refused
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"ok": False, "error": "send a JSON body"}, 415)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"ok": False, "error": "the body is not JSON"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"ok": False, "error": "the body must be a JSON object"}, 400)
        try:
            return await handler(request, body)
        except Refused as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, exc.status)
        except (ValueError, TypeError, CorruptJobError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, 400)

    return checked


def _broker(request: Request) -> Broker:
    return web.state(request).app.broker


@action
async def queue_action(request: Request, body: dict[str, Any]) -> Response:
    broker, verb = _broker(request), request.path_params["verb"]
    queue = request.path_params["queue"]
    if verb == "pause":
        changed = await broker.pause_queue(queue)
        return _ok(f"queue {queue} paused" if changed else f"queue {queue} was paused already")
    if verb == "resume":
        changed = await broker.resume_queue(queue)
        return _ok(f"queue {queue} resumed" if changed else f"queue {queue} was not paused")
    if verb == "purge":
        n = await broker.purge(queue)
        return _ok(f"purged {n} waiting job(s) of queue {queue}", count=n)
    raise Refused(f"unknown queue action {verb!r}", 404)


@action
async def job_action(request: Request, body: dict[str, Any]) -> Response:
    broker, verb = _broker(request), request.path_params["verb"]
    job_id = request.path_params["job_id"]
    job = await broker.get(job_id)
    if job is None:
        raise Refused(f"no job {job_id!r} (never existed, or its record expired)", 404)
    if verb == "cancel":
        if not await broker.cancel(job_id):
            raise Refused(f"job {job_id} is {job.status.value}: nothing to cancel", 409)
        asked = job.status is JobStatus.RUNNING
        return _ok(f"job {job_id} {'asked to stop' if asked else 'cancelled'}")
    if verb == "promote":
        if not await broker.promote(job_id):
            raise Refused(f"job {job_id} is {job.status.value}: only a waiting job runs now", 409)
        return _ok(f"job {job_id} is ready to run now")
    if verb == "requeue":
        return await _requeue(broker, job)
    if verb == "delete":
        if not await broker.forget([job_id]):
            raise Refused(f"job {job_id} is {job.status.value}: only a finished job goes", 409)
        return _ok(f"job {job_id} deleted")
    raise Refused(f"unknown job action {verb!r}", 404)


async def _requeue(broker: Broker, job: Job) -> Response:
    if job.status is JobStatus.DEAD_LETTER:
        n = await broker.requeue_dead(job.queue, [job.id])
        if not n:
            raise Refused(f"dead letter {job.id} could not be requeued", 409)
        return _ok(f"job {job.id} requeued")
    if not job.status.finished:
        raise Refused(f"job {job.id} is {job.status.value}: only a finished job is requeued", 409)
    (copy,) = await broker.enqueue([requeue_copy(job)])
    return _ok(f"job {job.id} enqueued again as {copy.id}", job_id=copy.id)


def requeue_copy(job: Job) -> Job:
    """A fresh copy of finished ``job`` to enqueue: a new id, the same task, queue, arguments
    and options, as if never run; outside any workflow and dedup window (it is a new job)."""
    return msgspec.structs.replace(
        job, **LIVE_FIELDS, id=new_job_id(), created_at=datetime.now(UTC), workflow=None,
        after=None, dedup=None, expires_at=None, created_by="dashboard",
    )  # fmt: skip


@action
async def dead_action(request: Request, body: dict[str, Any]) -> Response:
    broker, verb = _broker(request), request.path_params["verb"]
    queue = request.path_params["queue"]
    if verb not in ("requeue", "delete"):
        raise Refused(f"unknown dead-letter action {verb!r}", 404)
    done = "requeued" if verb == "requeue" else "deleted"
    if body.get("all") is True:
        task, text = _filter(body, "task"), _filter(body, "q")
        if task is None and text is None:
            whole = broker.requeue_dead if verb == "requeue" else broker.purge_dead
            n = await whole(queue)
        else:
            n = await _bulk(broker, queue, verb, task, text)
        return _ok(f"{done} {n} dead letter(s) of queue {queue}", count=n)
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise Refused('send {"ids": [...]} or {"all": true, "task": ..., "q": ...}')
    if len(ids) > MAX_IDS:
        raise Refused(f"at most {MAX_IDS} ids at once; use the filter instead")
    n = await _apply(broker, queue, verb, ids)
    return _ok(f"{done} {n} dead letter(s) of queue {queue}", count=n)


def _filter(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise Refused(f"{name} must be text")
    return value.strip() or None if value else None


async def _apply(broker: Broker, queue: str, verb: str, ids: Sequence[str]) -> int:
    if verb == "requeue":
        return await broker.requeue_dead(queue, ids)
    return await broker.forget(ids)


async def _bulk(broker: Broker, queue: str, verb: str, task: str | None, text: str | None) -> int:
    """Requeue or forget every dead letter of ``queue`` matching the filter: the listing walked
    a page at a time, each page's jobs handled as one batch."""
    total, cursor = 0, None
    while True:
        page = await broker.list_jobs(
            queue, Listing.DEAD, cursor=cursor, limit=MAX_PAGE, task=task, text=text
        )
        if page.jobs:
            total += await _apply(broker, queue, verb, [j.id for j in page.jobs])
        cursor = page.cursor
        if cursor is None:
            return total


ROUTES = [
    Route("/actions/queues/{queue}/{verb}", queue_action, methods=["POST"]),
    Route("/actions/jobs/{job_id}/{verb}", job_action, methods=["POST"]),
    Route("/actions/dead/{queue}/{verb}", dead_action, methods=["POST"]),
]
