"""Who may see the dashboard and who may act through it: HTTP basic auth, the application's own
auth hook, and CSRF protection of the actions.

Every request, static assets included, passes ``Guard`` (a plain ASGI middleware) first: basic
auth when configured (``401`` with ``WWW-Authenticate`` otherwise), then the hook (``403`` when
it answers false). Both may be set; both must pass.

CSRF (double submit, bound to a secret): each browser gets a random ``taskit_csrf`` cookie
(SameSite=Strict, HttpOnly); pages carry ``csrf_token(secret, cookie)``, an HMAC of it, in
``<meta name="csrf-token">``, and the JS sends it back in ``X-CSRF-Token`` with every action
(``POST``, JSON). ``check_action`` refuses a missing or wrong token and a cross-origin ``Origin``.
A page on another site can neither read the token nor send the header cross-origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "HEADER",
    "AuthHook",
    "Guard",
    "check_action",
    "csrf_token",
    "new_nonce",
]

#: The per-browser CSRF cookie, and the header an action carries its token in.
COOKIE = "taskit_csrf"
HEADER = "x-csrf-token"

#: ``auth(request)``: may this request see the dashboard (and act, unless read-only)?
AuthHook = Callable[[Request], bool | Awaitable[bool]]


def _basic_ok(header: str | None, expected: tuple[str, str]) -> bool:
    if header is None or header[:6].lower() != "basic ":
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, _, password = given.partition(b":")
    # Both compared, always, in constant time: no early answer tells which one was wrong.
    ok_user = hmac.compare_digest(user, expected[0].encode())
    ok_password = hmac.compare_digest(password, expected[1].encode())
    return ok_user & ok_password


class Guard:
    """ASGI middleware: basic auth, then the auth hook, on every HTTP request."""

    def __init__(
        self, app: ASGIApp, *, basic_auth: tuple[str, str] | None, auth: AuthHook | None
    ) -> None:
        self.app = app
        self.basic_auth = basic_auth
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = await self._refusal(Request(scope))
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    async def _refusal(self, request: Request) -> Response | None:
        if self.basic_auth is not None and not _basic_ok(
            request.headers.get("authorization"), self.basic_auth
        ):
            return PlainTextResponse(
                "authentication required", 401, {"WWW-Authenticate": 'Basic realm="taskit"'}
            )
        if self.auth is not None:
            allowed = self.auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                return PlainTextResponse("forbidden", 403)
        return None


def new_nonce() -> str:
    """A fresh per-browser cookie value."""
    return secrets.token_urlsafe(24)


def csrf_token(secret: bytes, nonce: str) -> str:
    """The token that goes with cookie value ``nonce``: only the server (the secret) makes it."""
    return hmac.new(secret, nonce.encode(), hashlib.sha256).hexdigest()


def _same_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every browser on same-origin requests; the token still holds
        return True
    # Behind a proxy that rewrites Host, X-Forwarded-Host names the address the browser used (a
    # page on another site cannot set it: a custom header needs a CORS preflight, never allowed).
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")}
    return urlsplit(origin).netloc in hosts - {""}


def check_action(request: Request, secret: bytes) -> JSONResponse | None:
    """``None`` when ``request`` may act; else the 403 reply saying why."""
    if not _same_origin(request):
        return _refused("cross-origin request refused")
    nonce = request.cookies.get(COOKIE)
    token = request.headers.get(HEADER)
    if not nonce or not token:
        return _refused("missing CSRF token: reload the page")
    if not hmac.compare_digest(token.encode(), csrf_token(secret, nonce).encode()):
        return _refused("bad CSRF token: reload the page")
    return None


def _refused(error: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": error}, 403)
