"""Wake-ups for reserves waiting on a SQLite broker, within a process and across processes.

Within the broker: a reserve that waits holds an ``anyio.Event`` the broker sets after each of
its own commits that made jobs ready. Across processes: each waiting reserve binds a UNIX
datagram socket in the database's wake directory; a commit that made jobs ready sends one
empty datagram to every socket there (non-blocking; one with no process behind it is deleted).
A reserve binds its socket before it looks at the queues, so a wake-up sent between its empty
look and its wait is never lost (the datagram waits in the kernel). Waits are bounded
(``FALLBACK``) in case a process died between its commit and its wake-ups.

The wake directory is ``<database>.wake`` next to the file, or, where socket paths there would
be too long for ``AF_UNIX`` (about 100 bytes), ``taskit-wake-<hash of the file's path>`` in the
temporary directory: every process computes the same one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import socket
import tempfile
import threading
from pathlib import Path

import anyio

log = logging.getLogger(__name__)

__all__ = ["FALLBACK", "Signal", "Wakeups", "wake_dir"]

#: The longest a waiting reserve goes without looking again, whatever it was told.
FALLBACK = 1.0
_MAX_PATH = 100  # AF_UNIX paths are at most 107 bytes on Linux, 103 on macOS
_NAME = 24  # a socket's name in the directory: "<pid>-<16 hex>" fits this


def wake_dir(database: str) -> Path:
    """The wake directory of ``database`` (see the module docstring)."""
    path = Path(database).resolve()
    beside = path.with_name(path.name + ".wake")
    if len(os.fsencode(beside)) + 1 + _NAME <= _MAX_PATH:
        return beside
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"taskit-wake-{digest}"


class Signal:
    """One waiting reserve's socket; use as a context manager (its file goes at exit).

    Where no socket can be bound (the directory not writable by this user), the reserve is
    woken by its own broker's commits and the fallback poll only, and a warning says so."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(8)}"
        self._sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
            self._sock.bind(os.fsdecode(self.path))
        except OSError as exc:
            self._sock.close()
            self._sock = None
            log.warning(
                "SQLite broker: no wake-up socket in %s (%s): a waiting reserve learns of "
                "other processes' jobs within %.0f s only", directory, exc, FALLBACK,
            )  # fmt: skip

    def __enter__(self) -> Signal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def drain(self) -> None:
        """Forget the wake-ups received so far."""
        with contextlib.suppress(BlockingIOError):
            while self._sock is not None:
                self._sock.recv(16)

    async def wait(self, event: anyio.Event, timeout: float) -> None:
        """Return when a datagram arrives, ``event`` is set, or ``timeout`` seconds pass."""
        async with anyio.create_task_group() as tg:
            with anyio.move_on_after(timeout):

                async def on_event() -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(on_event)
                if self._sock is None:
                    await anyio.sleep_forever()
                else:
                    await anyio.wait_readable(self._sock)
            tg.cancel_scope.cancel()


class Wakeups:
    """The broker's side: ``event`` for its own waiters, ``notify`` for every process's."""

    def __init__(self, database: str) -> None:
        self.directory = wake_dir(database)
        self._event: anyio.Event | None = None
        self._sender: socket.socket | None = None
        self._lock = threading.Lock()  # the sender is made and closed by any thread

    def event(self) -> anyio.Event:
        """The event the next local wake-up sets (call on the event loop)."""
        if self._event is None:
            self._event = anyio.Event()
        return self._event

    def wake_local(self) -> None:
        """Wake this broker's waiting reserves (call on the event loop)."""
        event, self._event = self._event, None
        if event is not None:
            event.set()

    def signal(self) -> Signal:
        return Signal(self.directory)

    def notify(self) -> None:
        """Send a wake-up to every waiting reserve of every process (any thread; never
        blocks, never raises)."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return  # no directory: nobody has waited yet
        with self._lock:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            for entry in entries:
                self._send(self._sender, entry.path)

    @staticmethod
    def _send(sender: socket.socket, path: str) -> None:
        try:
            sender.sendto(b"", path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(OSError):
                os.unlink(path)  # no process behind it
        except OSError:
            pass  # its buffer is full: it has wake-ups waiting already

    def close(self) -> None:
        """Close the sending socket (a later ``notify`` makes a new one)."""
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None
