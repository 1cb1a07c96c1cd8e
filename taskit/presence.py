"""Live workers: each running worker keeps a record of itself in the broker (its presence).

A worker renews its record every ``Settings.heartbeat_interval`` seconds (through
``Broker.announce``); the record expires after three intervals without renewal, so a worker that
died (SIGKILL, a lost host) drops out of ``live_workers`` on its own. A worker that stops cleanly
withdraws its record at once. Records are JSON, readable with any Redis client.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import anyio
import msgspec

from taskit._outage import Outage
from taskit.broker.base import Broker
from taskit.errors import TaskitError

__all__ = ["MAX_JOBS", "Announced", "RunningJob", "WorkerInfo", "announce", "live_workers"]

log = logging.getLogger("taskit.registry")  # the name operators filter by (this module's old name)

#: A record lives this many heartbeat intervals without renewal.
TTL_INTERVALS = 3
#: How long a stopping worker tries to withdraw its record (it expires on its own anyway, and a
#: broker that does not answer must not hold up the exit).
_WITHDRAW_TIMEOUT = 0.5
#: The most running jobs a record lists (the newest): a record stays small however wide the
#: worker, and ``running`` still counts them all.
MAX_JOBS = 100


class RunningJob(msgspec.Struct, kw_only=True, frozen=True):
    """One job a worker runs now, as its record lists it: since when (``started_at``, the
    attempt's start, UTC) is what an operator watching a stuck job wants."""

    id: str
    task: str
    started_at: datetime | None = None


class WorkerInfo(msgspec.Struct, kw_only=True):
    """What a worker says of itself. ``jobs_done`` counts the jobs it settled and the broker
    applied: completed, failed, retried, dead-lettered or cancelled (not released)."""

    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    beat_at: datetime
    running: int = 0
    jobs_done: int = 0
    #: The jobs it runs now, oldest first, at most ``MAX_JOBS`` (the newest); empty in a record
    #: of a worker older than this field.
    jobs: list[RunningJob] = msgspec.field(default_factory=list)


class Announced(Protocol):
    """What ``announce`` reads of a worker each time it renews the record (``Worker`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def queues(self) -> Sequence[str]: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def running_count(self) -> int:
        """Jobs running now."""

    @property
    def jobs_done(self) -> int:
        """Jobs settled so far (any outcome)."""

    def running_jobs(self) -> Sequence[RunningJob]:
        """The jobs running now, oldest first."""


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(WorkerInfo)


def _info(worker: Announced, started: datetime) -> WorkerInfo:
    return WorkerInfo(
        name=worker.name, host=socket.gethostname(), pid=os.getpid(), queues=list(worker.queues),
        concurrency=worker.concurrency, started_at=started, beat_at=datetime.now(UTC),
        running=worker.running_count, jobs_done=worker.jobs_done,
        jobs=list(worker.running_jobs()[-MAX_JOBS:]),
    )  # fmt: skip


async def announce(worker: Announced, broker: Broker, interval: float) -> None:
    """Keep ``worker``'s record alive in ``broker`` until cancelled, renewing it every
    ``interval`` seconds, then withdraw it. Broker errors are logged (once per outage, see
    ``taskit._outage``) and the beat goes on."""
    started = datetime.now(UTC)
    outage = Outage(f"worker {worker.name}: heartbeat", log)
    try:
        while True:
            record = _ENCODER.encode(_info(worker, started))
            pause = interval
            try:
                await broker.announce(worker.name, record, ttl=interval * TTL_INTERVALS)
                outage.recovered()
            except (TaskitError, OSError) as exc:
                pause = max(pause, outage.failed(exc))
            await anyio.sleep(pause)
    finally:
        with anyio.move_on_after(_WITHDRAW_TIMEOUT, shield=True):
            try:
                await broker.withdraw(worker.name)
            except (TaskitError, OSError) as exc:  # it expires on its own anyway
                log.debug("worker %s: withdrawing its record failed: %s", worker.name, exc)


async def live_workers(broker: Broker) -> list[WorkerInfo]:
    """The records of every live worker, by name. Raises the broker's errors."""
    workers = []
    for name, raw in (await broker.live()).items():
        try:
            workers.append(_DECODER.decode(raw))
        except msgspec.DecodeError:
            log.warning("worker record %r does not decode; ignored", name)
    return workers
