"""Calls made to several shards at once (``taskit.broker.sharded``), and how their answers add up.

``gather`` runs calls concurrently and raises the first failure as itself (never an exception
group: a caller sees the same ``BrokerError`` or ``ValueError`` one broker would raise), after
every call has finished. ``first`` asks one shard, then the others, for the one answer that
exists in a single shard (a job, a workflow). ``add_stats`` and ``add_counts`` sum what each
shard counted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import TypeVar

import anyio

from taskit.broker.browse import Counts
from taskit.job import QueueStats

__all__ = ["add_counts", "add_stats", "first", "gather"]

T = TypeVar("T")


async def gather(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Each call's answer, in order, the calls run concurrently. If any raised, the first
    exception (in call order) is raised once all have ended; a cancellation propagates."""
    if len(calls) == 1:
        return [await calls[0]()]
    answers: list[T | None] = [None] * len(calls)
    errors: list[tuple[int, Exception]] = []

    async def run(i: int) -> None:
        try:
            answers[i] = await calls[i]()
        except Exception as exc:
            errors.append((i, exc))

    async with anyio.create_task_group() as group:
        for i in range(len(calls)):
            group.start_soon(run, i)
    if errors:
        raise min(errors, key=lambda e: e[0])[1]
    return answers  # type: ignore[return-value]  # every slot was filled: no call failed


async def first(
    count: int, start: int, call: Callable[[int], Awaitable[T | None]]
) -> tuple[int, T] | None:
    """The shard (of ``count``) whose ``call`` answers something truthy, and that answer: shard
    ``start`` first, then every other one concurrently; None when none does."""
    got = await call(start)
    if got:
        return start, got
    others = [k for k in range(count) if k != start]
    answers = await gather([partial(call, k) for k in others])
    for k, answer in zip(others, answers, strict=True):
        if answer:
            return k, answer
    return None


def add_stats(each: Iterable[dict[str, QueueStats]]) -> dict[str, QueueStats]:
    """Per-queue stats of several shards summed, queues in the order first seen."""
    total: dict[str, QueueStats] = {}
    for stats in each:
        for queue, got in stats.items():
            into = total.setdefault(queue, QueueStats())
            for field in QueueStats.__struct_fields__:
                setattr(into, field, getattr(into, field) + getattr(got, field))
    return total


def add_counts(each: Iterable[list[Counts]]) -> list[Counts]:
    """Per-minute counts of several shards summed per (minute, queue), ordered by minute then
    queue (as ``Broker.counts`` answers)."""
    total: dict[tuple[int, str], Counts] = {}
    for counts in each:
        for got in counts:
            key = (got.minute, got.queue)
            had = total.get(key)
            total[key] = got if had is None else _added(had, got)
    return [total[key] for key in sorted(total)]


def _added(a: Counts, b: Counts) -> Counts:
    return Counts(
        minute=a.minute,
        queue=a.queue,
        enqueued=a.enqueued + b.enqueued,
        completed=a.completed + b.completed,
        failed=a.failed + b.failed,
        retried=a.retried + b.retried,
        dead=a.dead + b.dead,
        cancelled=a.cancelled + b.cancelled,
        runs=tuple(x + y for x, y in zip(a.runs, b.runs, strict=True)),
    )
