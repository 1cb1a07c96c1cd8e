"""What every page and action reads: the dashboard's settings (``Dashboard``, on
``request.app.state``), the links' base path, and ``render`` (a page with its CSRF token)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from taskit.app import App
from taskit.dashboard.security import COOKIE, csrf_token, new_nonce
from taskit.dashboard.views import ago, seconds, when

__all__ = ["Dashboard", "base", "render", "state", "templates"]

#: Where the templates and static assets are (package data).
HERE = Path(__file__).resolve().parent


@dataclass(eq=False, kw_only=True)
class Dashboard:
    """What every handler reads (``request.app.state.dashboard``)."""

    app: App
    read_only: bool
    secret: bytes
    title: str
    templates: Jinja2Templates
    #: Set when the server stops (``taskit dashboard`` does, on its first signal): live streams
    #: end within a moment rather than holding up the shutdown.
    stopping: bool = False


def state(request: Request) -> Dashboard:
    """The dashboard serving ``request``."""
    dash: Dashboard = request.app.state.dashboard
    return dash


def base(request: Request) -> str:
    """The path the dashboard is mounted at ("" at the root), for links."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(request: Request, page: str, context: dict[str, Any], status: int = 200) -> Response:
    """Render ``<page>.html`` with what every page needs (title, links' base, CSRF token, the
    read-only flag), setting the browser's CSRF cookie when it has none."""
    dash = state(request)
    nonce = request.cookies.get(COOKIE)
    fresh = not nonce
    if not nonce:
        nonce = new_nonce()
    context = {
        "page": page,
        "base": base(request),
        "title": dash.title,
        "read_only": dash.read_only,
        "csrf": csrf_token(dash.secret, nonce),
        **context,
    }
    response = dash.templates.TemplateResponse(request, f"{page}.html", context, status)
    if fresh:
        response.set_cookie(
            COOKIE, nonce, httponly=True, samesite="strict", path=base(request) or "/"
        )
    return response


def templates() -> Jinja2Templates:
    """The Jinja2 environment of the package's templates (autoescaped, strict)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,  # package files do not change under a running server
    )
    env.filters.update(when=when, ago=ago, seconds=seconds)
    return Jinja2Templates(env=env)
