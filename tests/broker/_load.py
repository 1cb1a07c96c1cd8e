"""Load for the failover and reshard tests: a producer and a consumer on one broker, counting
every job Redis acknowledged, so that a test can say how many were lost (none may be).

``under_load(broker, queue, move)`` runs them, calls ``move`` (blocking: a failover, a slot
migration...) in a thread once jobs flow, lets them run on until both have made progress past
the move, then stops them and counts. A job is acknowledged when its ``enqueue`` returned
(``enqueue_sync`` in a thread with ``sync=True``); it is lost when ``get`` no longer finds it.
An enqueue that raised ``BrokerOutcomeUnknownError`` is not acknowledged (it may or may not be
stored); any other error is recorded: the client is meant to follow a move within its timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from taskit.broker.redis import RedisBroker
from taskit.errors import BrokerError, BrokerOutcomeUnknownError
from taskit.job import OutcomeKind
from tests.broker._helpers import make_job, outcome

__all__ = ["Counted", "under_load"]

#: Jobs each side must handle after the move before the load stops: proof it followed.
AFTER_MOVE = 20
#: Seconds the whole run may take.
LIMIT = 60.0


@dataclass
class Counted:
    acked: list[str] = field(default_factory=list)
    completed: set[str] = field(default_factory=set)
    unknown: int = 0  # enqueues whose outcome is unknown (not acknowledged)
    errors: list[str] = field(default_factory=list)  # anything else raised, by either side
    lost: list[str] = field(default_factory=list)
    moved_at: tuple[int, int] | None = None  # (acked, completed) when the move returned
    #: How many were acknowledged when the move began: ``acked[began:]`` were acknowledged
    #: while it ran (or after), the only ones Redis's asynchronous replication may lose.
    began: int | None = None
    _progress: anyio.Event = field(default_factory=anyio.Event)

    def progressed(self) -> None:
        """A job was acknowledged or completed: wake ``until``."""
        self._progress.set()
        self._progress = anyio.Event()

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._progress.wait()


async def under_load(
    broker: RedisBroker, queue: str, move: Callable[[], Any], *, sync: bool = False
) -> Counted:
    """Produce and consume on ``queue`` while ``move`` runs (module docstring)."""
    counted = Counted()
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as group:
            group.start_soon(_produce, broker, queue, counted, sync)
            group.start_soon(_consume, broker, queue, counted)
            await counted.until(lambda: len(counted.completed) >= AFTER_MOVE)  # jobs flow
            counted.began = len(counted.acked)
            await anyio.to_thread.run_sync(move)
            counted.moved_at = (len(counted.acked), len(counted.completed))
            await counted.until(lambda: _past(counted))
            group.cancel_scope.cancel()
        for job_id in counted.acked:
            if await broker.get(job_id) is None:
                counted.lost.append(job_id)
    return counted


def lost_before_the_move(counted: Counted) -> list[str]:
    """The lost jobs that were acknowledged before the move began: none may be, whatever the
    move (a replica had them; a failover, a kill or a migration cannot take them)."""
    assert counted.began is not None
    early = set(counted.acked[: counted.began])
    return [job_id for job_id in counted.lost if job_id in early]


def _past(counted: Counted) -> bool:
    assert counted.moved_at is not None
    acked, completed = counted.moved_at
    return (
        len(counted.acked) >= acked + AFTER_MOVE
        and len(counted.completed) >= completed + AFTER_MOVE
    )


async def _produce(broker: RedisBroker, queue: str, counted: Counted, sync: bool) -> None:
    while True:
        job = make_job(queue)
        try:
            if sync:
                await anyio.to_thread.run_sync(broker.enqueue_blocking, [job])
            else:
                await broker.enqueue([job])
        except BrokerOutcomeUnknownError:
            counted.unknown += 1
        except BrokerError as exc:
            counted.errors.append(f"enqueue: {exc}")
            await anyio.sleep(0.05)
        else:
            counted.acked.append(job.id)
            counted.progressed()
        await anyio.sleep(0.002)


async def _consume(broker: RedisBroker, queue: str, counted: Counted) -> None:
    while True:
        try:
            leases = await broker.reserve([queue], count=10, lease=30.0, timeout=1.0)
            done = await broker.settle([outcome(held, OutcomeKind.COMPLETE) for held in leases])
        except BrokerOutcomeUnknownError:
            continue  # a lease it took is reclaimed later; nothing is lost
        except BrokerError as exc:
            counted.errors.append(f"consume: {exc}")
            await anyio.sleep(0.05)
            continue
        counted.completed.update(held.job.id for held, ok in zip(leases, done, strict=True) if ok)
