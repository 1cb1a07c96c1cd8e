"""Ways for an idle reserve in one process to learn that another process enqueued (issue 18).

Each has two sides: the waiter's ``wait(timeout)`` (returns when something may have changed, or
after ``timeout``: the bounded fallback) and the producer's ``notify()`` after its commit. The
waiter registers before it first looks at the queue, so a notify between an empty reserve and
the wait is never lost (a datagram or a FIFO byte waits in the kernel; a data version stays
changed).

* ``poll``: no signal; the waiter reserves every ``interval`` (the 50 ms baseline).
* ``data_version``: the waiter reads ``PRAGMA data_version`` every ``interval`` (a read, no write
  lock; it changes when another connection commits) and reserves when it moved. No producer side.
* ``socket``: each waiting process binds a UNIX datagram socket in a directory next to the
  database; the producer sends one empty datagram to every socket there (non-blocking; a socket
  with no process behind it is removed).
* ``fifo``: one named pipe next to the database; each waiter holds it open for reading (and for
  writing, so it never sees end-of-file); the producer opens it non-blocking, writes a byte and
  closes it (no reader: ``ENXIO``, nothing to wake). A byte wakes one reader, not all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["METHODS", "Notifier", "Waiter", "make_notifier", "make_waiter"]


class Waiter:
    """The waiter's side: ``prepare`` before a reserve, ``wait`` after an empty one."""

    def prepare(self) -> None:
        """Called before each reserve (``data_version`` reads the version it will compare)."""

    def wait(self, timeout: float) -> None:
        time.sleep(timeout)

    def close(self) -> None:
        pass


class Notifier:
    """The producer's side, called after each commit."""

    def notify(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Poll(Waiter):
    def __init__(self, interval: float) -> None:
        self.interval = interval

    def wait(self, timeout: float) -> None:
        time.sleep(min(self.interval, timeout))


class _DataVersion(Waiter):
    def __init__(self, read: Callable[[], int], interval: float) -> None:
        self.read, self.interval, self.seen = read, interval, read()

    def prepare(self) -> None:
        self.seen = self.read()

    def wait(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.read() == self.seen and time.monotonic() < end:
            time.sleep(self.interval)


class _SocketWaiter(Waiter):
    def __init__(self, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        self.path = directory / f"{os.getpid()}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def wait(self, timeout: float) -> None:
        if select.select([self.sock], [], [], timeout)[0]:
            with contextlib.suppress(BlockingIOError):
                while True:  # one wake-up for every datagram waiting
                    self.sock.recv(16)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


class _SocketNotifier(Notifier):
    def __init__(self, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        self.directory = str(directory)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def notify(self) -> None:
        for entry in os.scandir(self.directory):
            try:
                self.sock.sendto(b"", entry.path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)  # no process behind it
            except BlockingIOError:
                pass  # its buffer is full: it has wake-ups waiting already

    def close(self) -> None:
        self.sock.close()


class _FifoWaiter(Waiter):
    def __init__(self, path: Path) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # no EOF when producers close

    def wait(self, timeout: float) -> None:
        if select.select([self.fd], [], [], timeout)[0]:
            with contextlib.suppress(BlockingIOError):
                os.read(self.fd, 4096)

    def close(self) -> None:
        os.close(self.keep)
        os.close(self.fd)


class _FifoNotifier(Notifier):
    def __init__(self, path: Path) -> None:
        self.path = path

    def notify(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                return  # nobody waiting
            raise
        try:
            os.write(fd, b"x")
        except BlockingIOError:
            pass  # the pipe is full: wake-ups are waiting already
        finally:
            os.close(fd)


METHODS = ("poll-50ms", "data_version-1ms", "data_version-5ms", "socket", "fifo")


def make_waiter(method: str, db: Path, data_version: Callable[[], int]) -> Waiter:
    if method == "poll-50ms":
        return _Poll(0.05)
    if method.startswith("data_version-"):
        return _DataVersion(data_version, float(method.split("-")[1].removesuffix("ms")) / 1e3)
    if method == "socket":
        return _SocketWaiter(db.with_name(db.name + ".wake"))
    if method == "fifo":
        return _FifoWaiter(db.with_name(db.name + ".fifo"))
    raise ValueError(f"unknown wake-up method {method!r}; one of {', '.join(METHODS)}")


def make_notifier(method: str, db: Path) -> Notifier:
    if method == "socket":
        return _SocketNotifier(db.with_name(db.name + ".wake"))
    if method == "fifo":
        return _FifoNotifier(db.with_name(db.name + ".fifo"))
    if method == "poll-50ms" or method.startswith("data_version-"):
        return Notifier()
    raise ValueError(f"unknown wake-up method {method!r}; one of {', '.join(METHODS)}")
