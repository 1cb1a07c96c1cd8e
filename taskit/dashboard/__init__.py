"""taskit's web dashboard: queues, jobs, dead letters, workers, schedules, limits, workflows and
progress, updated live (docs/dashboard.md). Needs the ``dashboard`` extra:
``pip install 'taskit[dashboard]'``.

    from taskit.dashboard import dashboard

    web = dashboard(app, basic_auth=("admin", "secret"))   # an ASGI app: run it, or mount it
    fastapi_app.mount("/taskit", web)

``taskit dashboard MODULE:ATTR`` runs it under uvicorn; ``wsgi_dashboard`` serves it from a
WSGI app (Flask, Django).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from starlette.applications import Starlette

from taskit.app import App
from taskit.dashboard.app import build
from taskit.dashboard.security import AuthHook

__all__ = ["dashboard", "wsgi_dashboard"]

#: A WSGI application (PEP 3333), as ``wsgi_dashboard`` returns it.
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def dashboard(
    app: App,
    *,
    read_only: bool = False,
    auth: AuthHook | None = None,
    basic_auth: tuple[str, str] | None = None,
    secret: str | bytes | None = None,
    title: str = "taskit",
) -> Starlette:
    """The dashboard of ``app``'s broker, as an ASGI app (Starlette), to run or mount under any
    path.

    ``read_only``: no actions (each answers 403; the pages show no buttons). ``auth``: called
    with each request (a ``starlette.requests.Request``; sync or async), false answers 403.
    ``basic_auth``: ``(user, password)`` for HTTP basic auth (401 without them). Both may be
    given: both must pass. ``secret``: the key of the CSRF tokens; give the same one to every
    process behind one address (random per process by default, so a page from another process
    must be reloaded before it acts). ``TypeError``/``ValueError`` for a bad argument.
    """
    if not isinstance(app, App):
        raise TypeError(f"dashboard() takes a taskit App, got {type(app).__name__}")
    if auth is not None and not callable(auth):
        raise TypeError(f"auth must be a callable taking the request, got {auth!r}")
    if basic_auth is not None and (
        not isinstance(basic_auth, tuple)
        or len(basic_auth) != 2
        or not all(isinstance(part, str) and part for part in basic_auth)
    ):
        raise ValueError("basic_auth takes a (user, password) pair of non-empty strings")
    if isinstance(secret, str):
        secret = secret.encode()
    if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
        raise ValueError("secret must be at least 16 bytes (or characters)")
    return build(
        app, read_only=read_only, auth=auth, basic_auth=basic_auth, secret=secret, title=title
    )


def wsgi_dashboard(
    app: App,
    *,
    read_only: bool = False,
    auth: AuthHook | None = None,
    basic_auth: tuple[str, str] | None = None,
    secret: str | bytes | None = None,
    title: str = "taskit",
) -> WSGIApp:
    """``dashboard`` for a WSGI server or app (a2wsgi's ``ASGIMiddleware``: the ASGI app runs
    on an event loop in a thread of its own). Mount it under a path with your framework (e.g.
    werkzeug's ``DispatcherMiddleware``); the live view holds one WSGI worker per open page."""
    from a2wsgi import ASGIMiddleware

    web = dashboard(
        app, read_only=read_only, auth=auth, basic_auth=basic_auth, secret=secret, title=title
    )
    wrapped: WSGIApp = ASGIMiddleware(web)  # type: ignore[arg-type, assignment]
    return wrapped
