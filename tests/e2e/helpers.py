"""Helpers for end-to-end tests: `taskit worker` subprocesses and private redis-server processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    """A `taskit worker` (or other ``command``) subprocess whose log lines are collected by a
    reader thread."""

    def __init__(
        self, app_path: str, env: dict[str, str], *args: str, command: str = "worker"
    ) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskit", command, app_path, *args],
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, text: str, timeout: float = 20.0) -> str:
        """Block until a log line containing ``text`` appears; fail with the log if it does not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and self.log_complete):
                    raise AssertionError(f"no log line with {text!r}; log:\n{self.log}")
                self._changed.wait(min(remaining, 0.5))

    @property
    def log_complete(self) -> bool:
        """Whether the whole log is in: the process closed its stderr and every line was read."""
        return not self._reader.is_alive()

    @property
    def log(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait(self, timeout: float = 30.0) -> int:
        """Wait until the process exits and its whole log is read; its exit status. (After
        ``proc.wait()`` alone the reader thread may not have read the last lines yet: on a busy
        machine, a test that looked at ``log`` then missed them.)"""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        assert self.log_complete, f"the log of process {self.pid} was still open after its exit"
        return code

    def terminate(self, timeout: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextmanager
def worker_process(app_path: str, env: dict[str, str], *args: str) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(app_path, env, *args)
    try:
        worker.wait_for_line("starting: queues=")
        yield worker
    finally:
        worker.close()


class RedisServer:
    """A private redis-server on its own port and data directory, stopped by pid."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is not installed (needed by this test)")
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", "--appendonly", "no", *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # up (maybe locked)
                        return
            except OSError:
                time.sleep(0.02)  # the server is starting; nothing to wait on but the port
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextmanager
def redis_server(directory: Path, *extra: str) -> Iterator[RedisServer]:
    server = RedisServer(directory, None, *extra)
    server.start()
    try:
        yield server
    finally:
        server.kill()
