"""What the browser tests and ``benchmarks/dashboard.py`` share: Debian's Chromium driven by
Playwright, and an ASGI app served by uvicorn in a thread on a free loopback port.

Chromium is the system's (``/usr/bin/chromium``, the ``chromium`` package ``.ci/run``
installs), never a browser downloaded by ``playwright install``: Playwright's bundled driver
starts it through ``executable_path``.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "VIEWPORT", "chromium_missing", "launch", "serve"]

#: What ``serve`` awaits on the server's loop once it stopped.
Close = Callable[[], Awaitable[None]]
#: Debian's Chromium, as the ``chromium`` package installs it.
CHROMIUM = "/usr/bin/chromium"
#: Headless, quiet: no first-run, sync, update or background traffic (a CI box has no display
#: and may have no network).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
#: The page size of the tests and the screenshots (small PNGs, a laptop's view).
VIEWPORT = {"width": 1280, "height": 800}
#: Seconds a stopping server waits for open connections (a page's event stream) to close.
_GRACE = 1.0
_START_TIMEOUT = 10.0


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (Playwright or Chromium missing), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (the dev extra installs it)"
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


def launch(playwright: Playwright) -> Browser:
    """Start headless Chromium (the system's) under ``playwright``."""
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)


class _Server(uvicorn.Server):
    """A uvicorn server that says when it listens (an event, not a poll of ``started``)."""

    def __init__(self, config: uvicorn.Config, close: Close | None) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.close = close

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:  # a failed startup exits the thread: say so at once
            self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:  # on the server's loop, where the app's connections live
            if self.close is not None:
                await self.close()


@contextmanager
def serve(app: Any, *, close: Close | None = None) -> Iterator[str]:
    """Serve the ASGI ``app`` on a free port of 127.0.0.1 in a thread (its own event loop);
    yield its base URL (``http://127.0.0.1:<port>``); stop it, await ``close()`` on its loop
    (e.g. ``App.close``: the broker's connections) and join the thread on exit.
    ``RuntimeError`` when it does not start (the thread's error is in the log)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", http="h11", ws="none", lifespan="auto",
        timeout_graceful_shutdown=_GRACE,
    )  # fmt: skip
    server = _Server(config, close)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not server.ready.wait(_START_TIMEOUT) or not server.started:
            raise RuntimeError("the dashboard's uvicorn server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(_START_TIMEOUT)
        sock.close()
