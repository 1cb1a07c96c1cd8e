"""The App the SQLite chaos rows (``tests/chaos/sqlite.py``) run in ``taskit worker``
subprocesses. Broker: ``TASKIT_BROKER_URL`` (a ``sqlite:///`` URL). Each handler start and end
is one ``O_APPEND`` line of ``$CHAOS_LEDGER/<pid>.ledger`` (``S|id|pid|time`` /
``E|id|pid|time``, wall-clock seconds), whole
or absent whatever kills the process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from taskit import App

app = App()
_LEDGER_DIR = Path(os.environ.get("CHAOS_LEDGER", "/tmp/taskit-sqlite-chaos"))
_fd: int | None = None


def record(*fields: object) -> None:
    """Append one ledger line (one write: whole or absent)."""
    global _fd
    if _fd is None:
        _LEDGER_DIR.mkdir(parents=True, exist_ok=True)
        path = _LEDGER_DIR / f"{os.getpid()}.ledger"
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, ("|".join(str(f) for f in fields) + "\n").encode())


@app.task(name="chaos.work")
async def work(key: str, seconds: float) -> str:
    """Sleep ``seconds`` (cooperatively); the job id is ``key``."""
    record("S", key, os.getpid(), f"{time.time():.6f}")
    await anyio.sleep(seconds)
    record("E", key, os.getpid(), f"{time.time():.6f}")
    return key


@app.task(name="chaos.work_sync")
def work_sync(key: str, seconds: float) -> str:
    """``work`` as a ``def`` handler (a worker of concurrency 1 runs it in a chain:
    ``taskit._chain``)."""
    record("S", key, os.getpid(), f"{time.time():.6f}")
    time.sleep(seconds)
    record("E", key, os.getpid(), f"{time.time():.6f}")
    return key
