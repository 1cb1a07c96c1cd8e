"""The App that the chaos suite runs in `taskit worker` subprocesses.

Broker: ``TASKIT_BROKER_URL`` (the other ``TASKIT_*`` settings apply too). Every worker process
appends to its own ledger file ``$CHAOS_LEDGER/<pid>.ledger`` (``O_APPEND``, one ``os.write`` per
line, so a line is whole or absent even when the process is killed); the ledger survives the broker
being killed. Lines are ``|``-separated, times are ``time.time()`` minus ``CHAOS_CLOCK_OFFSET``
(so a worker under a skewed clock still writes true times):

==========  ===========================================================
``R``       reserve handed out a lease: id, attempt, token, pid, time
``C``       reclaim took over an expired lease: id, attempt, token, pid, time
``S``       a handler started: id, pid, time
``E``       a handler ended: id, pid, time, ``ok`` or the error type
``X``       a settle: id, token, kind, applied (1/0/error), pid, time
==========  ===========================================================

``CHAOS_CLOCK_OFFSET`` (seconds) without libfaketime: this process's ``time.time`` is shifted by
it (see ``tests/chaos/skew.py``); with libfaketime the whole process clock is shifted already.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from taskit import App, Fail
from taskit.broker.redis import RedisBroker
from taskit.config import Settings
from taskit.job import Lease, Outcome

_OFFSET = float(os.environ.get("CHAOS_CLOCK_OFFSET", "0") or 0)
if _OFFSET and os.environ.get("CHAOS_PY_SKEW") == "1":  # no libfaketime: shift Python's clock
    _real_time, _real_time_ns = time.time, time.time_ns
    time.time = lambda: _real_time() + _OFFSET
    time.time_ns = lambda: _real_time_ns() + int(_OFFSET * 1e9)

_LEDGER_DIR = Path(os.environ.get("CHAOS_LEDGER", "/tmp/taskit-chaos-ledger"))
_fd: int | None = None


def now() -> float:
    """True wall-clock time, whatever skew this process runs under."""
    return time.time() - _OFFSET


def record(*fields: object) -> None:
    """Append one ledger line (one write: whole or absent)."""
    global _fd
    if _fd is None:
        _LEDGER_DIR.mkdir(parents=True, exist_ok=True)
        path = _LEDGER_DIR / f"{os.getpid()}.ledger"
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, ("|".join(str(f) for f in fields) + "\n").encode())


class LedgerBroker(RedisBroker):
    """The Redis broker, recording every lease it hands out and every settle it makes."""

    async def reserve(
        self, queues: Sequence[str], *, count: int, lease: float, timeout: float
    ) -> list[Lease]:
        leases = await super().reserve(queues, count=count, lease=lease, timeout=timeout)
        for held in leases:
            record("R", held.job.id, held.job.attempts, held.token, os.getpid(), f"{now():.6f}")
        return leases

    async def reclaim(
        self, queues: Sequence[str], *, lease: float, limit: int = 100
    ) -> list[Lease]:
        leases = await super().reclaim(queues, lease=lease, limit=limit)
        for held in leases:
            record("C", held.job.id, held.job.attempts, held.token, os.getpid(), f"{now():.6f}")
        return leases

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        try:
            applied = await super().settle(outcomes)
        except BaseException:
            for o in outcomes:
                record("X", o.job_id, o.token, o.kind.value, "error", os.getpid(), f"{now():.6f}")
            raise
        for o, ok in zip(outcomes, applied, strict=True):
            record("X", o.job_id, o.token, o.kind.value, int(ok), os.getpid(), f"{now():.6f}")
        return applied


_settings = Settings.from_env()
app = App(
    LedgerBroker(
        _settings.broker_url, result_ttl=_settings.result_ttl, timeout=_settings.broker_timeout
    ),
    settings=_settings,
)


def _start(key: str) -> None:
    record("S", key, os.getpid(), f"{now():.6f}")


def _end(key: str, outcome: str) -> None:
    record("E", key, os.getpid(), f"{now():.6f}", outcome)


@app.task(name="chaos.work")
async def work(key: str, seconds: float) -> str:
    """Sleep ``seconds`` (cooperatively). The job id must be ``key``."""
    _start(key)
    try:
        await anyio.sleep(seconds)
    except BaseException as exc:
        _end(key, type(exc).__name__)
        raise
    _end(key, "ok")
    return key


@app.task(name="chaos.first_long")
async def first_long(key: str, first: float, then: float) -> str:
    """Sleep ``first`` seconds (cooperatively: the lease is kept) on the job's first start
    anywhere, ``then`` seconds on later starts."""
    _start(key)
    try:
        os.close(os.open(_LEDGER_DIR / f"started-{key}", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        seconds = then
    else:
        seconds = first
    try:
        await anyio.sleep(seconds)
    except BaseException as exc:
        _end(key, type(exc).__name__)
        raise
    _end(key, "ok")
    return key


@app.task(name="chaos.stall", backoff=0.0)
async def stall(key: str, seconds: float) -> str:
    """On its first run anywhere, block the whole event loop for ``seconds`` (no heartbeat, no
    reaper: the lease expires under it); later runs return at once."""
    _start(key)
    try:
        os.close(os.open(_LEDGER_DIR / f"stalled-{key}", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        pass
    else:
        time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point
    _end(key, "ok")
    return key


@app.task(name="chaos.flaky", max_retries=2, backoff=0.1)
async def flaky(key: str, fails: int) -> str:
    """Raise on the first ``fails`` runs of ``key``, counted across processes (3 or more: it ends
    dead-lettered, as max_retries is 2); ``fails`` < 0: ``Fail`` at once (it ends failed)."""
    _start(key)
    fd = os.open(_LEDGER_DIR / f"runs-{key}", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        runs = os.fstat(fd).st_size + 1
        os.write(fd, b".")
    finally:
        os.close(fd)
    if fails < 0:
        _end(key, "Fail")
        raise Fail(f"{key} refuses")
    if runs <= fails:
        _end(key, "RuntimeError")
        raise RuntimeError(f"run {runs} of {key} fails")
    _end(key, "ok")
    return key


@app.task(name="chaos.crash", max_retries=2, backoff=0.0)
def crash(key: str) -> None:
    """Kill the worker process outright, every time."""
    _start(key)
    os._exit(1)
