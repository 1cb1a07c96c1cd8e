"""Fixtures of the browser tests: one headless Chromium per module, the dashboard served by
uvicorn in a thread against the real Redis (a fresh key prefix per test), a ``Seeder`` that
puts jobs in every state through the broker API, and a page that records console errors.

The tests are synchronous (Playwright's sync API); the broker calls of the seeder and of the
dashboard run on event loops in other threads. A missing Playwright or Chromium fails under
``CI=true`` and skips elsewhere (``tests._ci.missing``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Response

#: Opens a tab (a fresh browser context, with these options) on a base URL.
Tab = Callable[..., "Dash"]
#: Starts the dashboard of the test's prefix with these ``dashboard()`` options; its base URL.
Serve = Callable[..., str]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's), one per test module. Not one per session: between its
    calls Playwright's sync API leaves its event loop marked as running in the test's thread,
    so no anyio test of another module could run its loop while it lives."""
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


@contextmanager
def seeding(portal: BlockingPortal, url: str) -> Iterator[Seeder]:
    """A ``Seeder`` on a fresh key prefix; the prefix's keys are deleted afterwards."""
    prefix = f"dash-{uuid.uuid4().hex[:10]}"
    seeder = Seeder(portal, url, prefix)
    try:
        yield seeder
    finally:
        seeder.close()
        client = redis.Redis.from_url(url)
        doomed = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
        if doomed:
            client.delete(*doomed)
        client.close()


@contextmanager
def dashboard_of(seed: Seeder, **options: Any) -> Iterator[str]:
    """Serve the dashboard (``taskit.dashboard.dashboard``, with ``options``) of a fresh App
    on ``seed``'s prefix under uvicorn; its base URL."""
    from taskit.dashboard import dashboard

    app = make_app(seed.url, seed.prefix)
    with serve(dashboard(app, **options), close=app.close) as base:
        yield base


@pytest.fixture
def seed(redis_url: str, portal: BlockingPortal) -> Iterator[Seeder]:
    """A ``Seeder`` on a fresh key prefix for one test."""
    with seeding(portal, redis_url) as seeder:
        yield seeder


@pytest.fixture
def serve_dashboard(seed: Seeder) -> Iterator[Serve]:
    """Start the dashboard of the test's prefix with the given options; its base URL. Every
    server started stops at the end of the test."""
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(dashboard_of(seed, **options))


@dataclass
class Dash:
    """A browser tab on one served dashboard, and the console errors it logged."""

    page: Page
    base: str
    errors: list[str] = field(default_factory=list)
    #: The messages of the dialogs (``window.confirm``) the page opened, in order.
    dialogs: list[str] = field(default_factory=list)
    #: Whether the next dialogs are accepted (OK) or dismissed (Cancel).
    accept: bool = True

    def url(self, path: str) -> str:
        return self.base + path

    def open(self, path: str) -> Response:
        """Load ``path``; the response must be a success."""
        response = self.page.goto(self.url(path))
        assert response is not None, f"no response for {path}"
        assert response.ok, f"{path} answered {response.status}"
        return response


def open_dash(browser: Browser, base: str, **context_options: Any) -> Dash:
    """A tab in a fresh browser context (no cookies; ``context_options`` for
    ``Browser.new_context``) on ``base``: a ``Dash`` whose ``errors`` collect console errors
    and uncaught page errors, and whose dialogs are answered by its ``accept``. Close it with
    ``dash.page.context.close()``."""
    context = browser.new_context(viewport=VIEWPORT, **context_options)  # type: ignore[arg-type]
    page = context.new_page()
    dash = Dash(page, base)
    page.on("console", lambda message: _console(dash, message))
    page.on("pageerror", lambda exc: dash.errors.append(str(exc)))
    page.on("dialog", lambda dialog: _answer(dash, dialog))
    return dash


def _console(dash: Dash, message: ConsoleMessage) -> None:
    if message.type == "error":
        dash.errors.append(f"{message.text} ({message.location.get('url')})")


def _answer(dash: Dash, dialog: Dialog) -> None:
    dash.dialogs.append(dialog.message)
    if dash.accept:
        dialog.accept()
    else:
        dialog.dismiss()


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """Opens tabs (``open_dash``) for one test; they close at its end."""
    opened: list[Dash] = []

    def open_tab(base: str, **context_options: Any) -> Dash:
        opened.append(open_dash(browser, base, **context_options))
        return opened[-1]

    yield open_tab
    for dash in opened:
        dash.page.context.close()


@pytest.fixture
def dash(serve_dashboard: Serve, tab: Tab) -> Dash:
    """A tab on the dashboard of the test's prefix (default options)."""
    return tab(serve_dashboard())
