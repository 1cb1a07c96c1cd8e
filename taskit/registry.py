"""The worker registry: each running worker keeps a record of itself in the broker.

A worker renews its record every ``Settings.heartbeat_interval`` seconds (through
``Broker.announce``); the record expires after three intervals without renewal, so a worker that
died (SIGKILL, a lost host) drops out of ``live_workers`` on its own. A worker that stops cleanly
withdraws its record at once. Records are JSON, readable with any Redis client.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import msgspec

from taskit._outage import Outage
from taskit.broker.base import Broker
from taskit.errors import TaskitError

if TYPE_CHECKING:
    from taskit.worker import Worker

__all__ = ["WorkerInfo", "announce", "live_workers"]

log = logging.getLogger(__name__)

#: A record lives this many heartbeat intervals without renewal.
TTL_INTERVALS = 3
#: How long a stopping worker tries to withdraw its record (it expires on its own anyway, and a
#: broker that does not answer must not hold up the exit).
_WITHDRAW_TIMEOUT = 0.5


class WorkerInfo(msgspec.Struct, kw_only=True):
    """What a worker says of itself. ``jobs_done`` counts jobs it settled (any outcome)."""

    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    beat_at: datetime
    running: int = 0
    jobs_done: int = 0


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(WorkerInfo)


def _info(worker: Worker, started: datetime) -> WorkerInfo:
    stats = worker.stats
    done = stats.completed + stats.failed + stats.retried + stats.dead_lettered + stats.cancelled
    return WorkerInfo(
        name=worker.name, host=socket.gethostname(), pid=os.getpid(), queues=list(worker.queues),
        concurrency=worker.concurrency, started_at=started, beat_at=datetime.now(UTC),
        running=len(worker._running), jobs_done=done,
    )  # fmt: skip


async def announce(worker: Worker) -> None:
    """Keep ``worker``'s record alive until cancelled, then withdraw it. Broker errors are
    logged (once per outage, see ``taskit._outage``) and the beat goes on."""
    broker = worker.app.broker
    interval = worker.app.settings.heartbeat_interval
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
