"""The App that the workflow chaos row (``tests/chaos/workflows.py``) runs in `taskit worker`
subprocesses: the chaos app's ledger broker (``tests.apps.chaos_app``: every lease and settle
written to this process's ledger) and two tasks, a chord member and a chord callback.

A run hook puts each attempt's job id and attempt number in a context variable for the handler:
both tasks write their start and end to the ledger under their job id (so the chaos checker
sees every run), and the callback records its side effect in Redis before it returns: one
``RPUSH`` of ``[job id, attempt, chord, results]`` to the list ``CHAOS_WORKFLOW_EFFECTS``
names. A callback released twice, or fed its members' results out of order, shows there.
"""

from __future__ import annotations

import json
import os
from contextvars import ContextVar, Token
from types import TracebackType

import anyio
import redis.asyncio

from taskit import App, Job
from taskit.config import Settings
from taskit.job import Outcome
from tests.apps.chaos_app import LedgerBroker, now, record

#: The Redis list every callback run appends its side effect to (the test names it).
EFFECTS = os.environ.get("CHAOS_WORKFLOW_EFFECTS", "chaos-workflows:effects")

_running: ContextVar[tuple[str, int]] = ContextVar("chaos_workflow_running", default=("", 0))


class _Noted:
    """A run hook's attempt: the handler runs with its job id and attempt in ``_running``."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._token: Token[tuple[str, int]] | None = None

    def __enter__(self) -> _Noted:
        self._token = _running.set((self._job.id, self._job.attempts))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _running.reset(self._token)

    def settled(self, outcome: Outcome | None, applied: bool) -> None:
        pass


_settings = Settings.from_env()
app = App(
    LedgerBroker(
        _settings.broker_url, result_ttl=_settings.result_ttl, timeout=_settings.broker_timeout
    ),
    settings=_settings,
)
app.hooks.on_run(_Noted)


@app.task(name="chaos.member")
async def member(chord: int, index: int, seconds: float) -> str:
    """Sleep ``seconds`` (cooperatively); the member's name in its chord."""
    job_id, _ = _running.get()
    record("S", job_id, os.getpid(), f"{now():.6f}")
    try:
        await anyio.sleep(seconds)
    except BaseException as exc:
        record("E", job_id, os.getpid(), f"{now():.6f}", type(exc).__name__)
        raise
    record("E", job_id, os.getpid(), f"{now():.6f}", "ok")
    return f"{chord}.{index}"


@app.task(name="chaos.tally")
async def tally(results: list[str], chord: int) -> int:
    """The chord's callback: record this run (job id, attempt, what it was fed) in Redis."""
    job_id, attempt = _running.get()
    record("S", job_id, os.getpid(), f"{now():.6f}")
    client = redis.asyncio.Redis.from_url(_settings.broker_url)
    try:
        await client.rpush(EFFECTS, json.dumps([job_id, attempt, chord, results]))
    except BaseException as exc:
        record("E", job_id, os.getpid(), f"{now():.6f}", type(exc).__name__)
        raise
    finally:
        await client.aclose()
    record("E", job_id, os.getpid(), f"{now():.6f}", "ok")
    return len(results)
