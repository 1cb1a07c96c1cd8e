"""Fixtures of the browser tests: one headless Chromium per session, the dashboard served by
uvicorn in a thread against the real Redis (a fresh key prefix per test), a ``Seeder`` that
puts jobs in every state through the broker API, and a page that records console errors.

The tests are synchronous (Playwright's sync API); the broker calls of the seeder and of the
dashboard run on event loops in other threads. A missing Playwright or Chromium fails under
``CI=true`` and skips elsewhere (``tests._ci.missing``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import redis
from anyio.from_thread import BlockingPortal, start_blocking_portal

from tests._ci import missing
from tests.browser._app import make_app
from tests.browser._seed import Seeder
from tests.browser._web import VIEWPORT, chromium_missing, launch, serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

#: Starts the dashboard of the test's prefix with these ``dashboard()`` options; its base URL.
Serve = Callable[..., str]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's), one for the session."""
    why = chromium_missing()
    if why is not None:
        missing(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def portal() -> Iterator[BlockingPortal]:
    """An asyncio event loop in a thread, for the seeder's broker calls."""
    with start_blocking_portal("asyncio") as running:
        yield running


@pytest.fixture
def seed(redis_url: str, portal: BlockingPortal) -> Iterator[Seeder]:
    """A ``Seeder`` on a fresh key prefix; the prefix's keys are deleted afterwards."""
    prefix = f"dash-{uuid.uuid4().hex[:10]}"
    seeder = Seeder(portal, redis_url, prefix)
    try:
        yield seeder
    finally:
        seeder.close()
        client = redis.Redis.from_url(redis_url)
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
        if doomed:
            client.delete(*doomed)
        client.close()


@pytest.fixture
def serve_dashboard(seed: Seeder) -> Iterator[Serve]:
    """Start the dashboard (``taskit.dashboard.dashboard``) of a fresh App on the seeder's
    prefix under uvicorn, with the given options; every server started stops at the end."""
    from taskit.dashboard import dashboard

    with ExitStack() as stack:

        def start(**options: Any) -> str:
            app = make_app(seed.url, seed.prefix)
            return stack.enter_context(serve(dashboard(app, **options), close=app.close))

        yield start


@dataclass
class Dash:
    """A browser tab on one served dashboard, and the console errors it logged."""

    page: Page
    base: str
    errors: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def open(self, path: str) -> Response:
        """Load ``path``; the response must be a success."""
        response = self.page.goto(self.url(path))
        assert response is not None, f"no response for {path}"
        assert response.ok, f"{path} answered {response.status}"
        return response


@pytest.fixture
def tab(browser: Browser) -> Iterator[Callable[[str], Dash]]:
    """Open a fresh browser context (no cookies) on a base URL: a ``Dash`` whose ``errors``
    collect console errors and uncaught page errors. Contexts close at the end."""
    contexts = []

    def open_tab(base: str) -> Dash:
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        dash = Dash(page, base)
        page.on("console", lambda m: dash.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: dash.errors.append(str(exc)))
        return dash

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def dash(serve_dashboard: Serve, tab: Callable[[str], Dash]) -> Dash:
    """A tab on the dashboard of the test's prefix (default options)."""
    return tab(serve_dashboard())
