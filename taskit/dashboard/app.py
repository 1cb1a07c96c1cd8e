"""The dashboard's ASGI app: its routes and middleware.

Middleware, outermost first: ``Timing`` (``Server-Timing: app;dur=<ms>`` on every response, the
server time the benchmark reads), ``Guard`` (auth, ``taskit.dashboard.security``). Links are
built from the request's ``root_path``, so the app works mounted under any path.
"""

from __future__ import annotations

import logging
import secrets
import time

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskit.app import App
from taskit.dashboard import actions, live, pages
from taskit.dashboard.context import HERE, Dashboard, render, templates
from taskit.dashboard.security import AuthHook, Guard
from taskit.errors import TaskitError

__all__ = ["Timing", "build"]

log = logging.getLogger(__name__)


class Timing:
    """ASGI middleware: ``Server-Timing: app;dur=<ms>``, the time until the response started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - began) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={ms:.1f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)


async def not_found(request: Request, exc: Exception) -> Response:
    """An unknown path: a plain page, not a stack trace."""
    return HTMLResponse("<h1>Not found</h1>", 404)


async def broker_down(request: Request, exc: Exception) -> Response:
    """The broker failed (unreachable, timed out): say so, with 503, and log it once here."""
    log.warning("dashboard: %s %s: the broker failed: %s", request.method, request.url.path, exc)
    message = f"the broker cannot be reached: {type(exc).__name__}: {exc}"
    if "/actions/" in request.url.path or "/api/" in request.url.path:
        return JSONResponse({"ok": False, "error": message}, 503)
    return render(request, "error", {"message": message}, 503)


def build(
    app: App,
    *,
    read_only: bool,
    auth: AuthHook | None,
    basic_auth: tuple[str, str] | None,
    secret: bytes | None,
    title: str,
) -> Starlette:
    """The Starlette app (see ``taskit.dashboard.dashboard``)."""
    dash = Dashboard(
        app=app, read_only=read_only, secret=secret or secrets.token_bytes(32), title=title,
        templates=templates(),
    )  # fmt: skip

    routes = [
        *pages.ROUTES,
        *actions.ROUTES,
        Route("/api/live", live.stream, name="live"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    web = Starlette(
        routes=routes,
        middleware=[
            Middleware(Timing),
            Middleware(Guard, basic_auth=basic_auth, auth=auth),
        ],
        exception_handlers={404: not_found, TaskitError: broker_down, OSError: broker_down},
    )
    web.state.dashboard = dash
    return web
