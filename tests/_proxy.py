"""A TCP proxy on loopback that loses replies: it forwards a command to Redis, lets it run, then
drops the connection instead of passing the reply back ("a connection dropped after a command
ran"). Runs on an event loop of its own in a thread, so it serves the test's own clients and
worker subprocesses alike.

``cut(marker)`` arms the next connection that sends a chunk containing ``marker``; ``chance``
cuts every such chunk with that probability (chaos). The connection is cut when the reply to
that chunk arrives from Redis: the command certainly ran, and its reply is thrown away.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from tests.e2e.helpers import free_port

__all__ = ["LossyProxy", "lossy_proxy"]

_CHUNK = 65536


class LossyProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream``; see the module docstring."""

    def __init__(self, upstream: int, *, seed: int = 0) -> None:
        self.upstream = upstream
        self.port = free_port()
        #: Connections cut so far (each one lost the replies it was owed).
        self.cuts = 0
        self._armed: list[bytes] = []
        self._chance = 0.0
        self._marker = b""
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="lossy-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut(self, marker: bytes) -> None:
        """Cut the next connection that sends ``marker``, once its reply comes back."""
        with self._lock:
            self._armed.append(marker)

    def cut_randomly(self, marker: bytes, chance: float) -> None:
        """From now on cut each chunk carrying ``marker`` with probability ``chance``."""
        with self._lock:
            self._marker, self._chance = marker, chance

    def _should_cut(self, chunk: bytes) -> bool:
        with self._lock:
            for i, marker in enumerate(self._armed):
                if marker in chunk:
                    del self._armed[i]
                    return True
            return (
                bool(self._marker)
                and self._marker in chunk
                and (self._random.random() < self._chance)
            )

    # -- the loop thread ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("the lossy proxy did not start")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            with suppress(Exception):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            client_w.close()
            return
        pending = asyncio.Event()  # a cut is due: the next reply from Redis is dropped

        async def upward() -> None:
            while data := await client_r.read(_CHUNK):
                if self._should_cut(data):
                    pending.set()
                server_w.write(data)
                await server_w.drain()

        async def downward() -> None:
            while data := await server_r.read(_CHUNK):
                if pending.is_set():
                    with self._lock:
                        self.cuts += 1
                    return  # the command ran; its reply is lost with the connection
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.ensure_future(upward()), asyncio.ensure_future(downward())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for writer in (client_w, server_w):
                writer.transport.abort()  # a reset, not a polite close: like a dropped link
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@contextmanager
def lossy_proxy(upstream: int, *, seed: int = 0) -> Iterator[LossyProxy]:
    """A started ``LossyProxy`` to ``upstream``, stopped afterwards."""
    proxy = LossyProxy(upstream, seed=seed)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
