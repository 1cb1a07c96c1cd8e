"""The processes of ``benchmarks/sqlite_probe.py`` for Huey's SQLite storage (``SqliteHuey``).

Driven as Huey's docs show: a task called to enqueue it, and the consumer (``Consumer``, what
``huey_consumer`` runs: one worker thread, its default polling of 0.1 s growing by 1.15 to 10 s
when the queue is empty, and the scheduler thread) to run the jobs; ``SqliteHuey``'s defaults
(WAL; ``synchronous`` left at SQLite's default, FULL on Debian: an fsync per commit), and
the same with ``synchronous=NORMAL`` (the probe's design's setting) for a like-for-like
comparison (``sync="NORMAL"``: the connection's pragma set after Huey opens it). The task
counts itself in its process (a list of its argument) and in a shared counter, so that the
process knows when the last one ran; it returns ``None``, so no result is stored (Huey stores
none for ``None``).
"""

from __future__ import annotations

import logging
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from huey import SqliteHuey
from huey.api import TaskWrapper
from huey.consumer import Consumer
from huey.storage import SqliteStorage

__all__ = ["huey_app", "huey_consumer", "huey_producer", "huey_waiter"]


class _NormalSqliteStorage(SqliteStorage):  # type: ignore[misc]
    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn


def huey_app(db: str, sync: str, ran: Any = None) -> tuple[SqliteHuey, TaskWrapper]:
    """The Huey instance on ``db`` and its one task ``probe(k, t0)``, which calls ``ran``;
    ``sync`` "default" or "NORMAL"."""
    if sync not in ("default", "NORMAL"):
        raise ValueError(f"sync must be 'default' or 'NORMAL', not {sync!r}")
    storage = {"storage_class": _NormalSqliteStorage} if sync == "NORMAL" else {}
    huey = SqliteHuey(name="probe", filename=db, **storage)

    @huey.task(name="probe")
    def probe(k: int, t0: float) -> None:
        ran(k, t0)

    return huey, probe


def huey_producer(
    db: str, sync: str, first: int, count: int, start: Barrier, out: Queue[dict[str, Any]]
) -> None:
    """Enqueue ``count`` jobs by calling the task, arguments ``first`` onwards."""
    _, probe = huey_app(db, sync)
    calls: list[float] = []
    start.wait()
    began = time.monotonic()
    for k in range(first, first + count):
        t = time.perf_counter()
        probe(k, 0.0)
        calls.append(time.perf_counter() - t)
    ended = time.monotonic()
    out.put({"role": "producer", "ids": list(range(first, first + count)), "calls": calls,
             "began": began, "ended": ended})  # fmt: skip


def huey_consumer(
    db: str,
    sync: str,
    total: int,
    counter: Synchronized[int],
    start: Barrier,
    out: Queue[dict[str, Any]],
) -> None:
    """Run a consumer until ``total`` jobs ran across all consumer processes."""
    logging.getLogger("huey").setLevel(logging.WARNING)
    keys: list[int] = []
    ends: list[float] = []
    all_ran = threading.Event()

    def ran(k: int, t0: float) -> None:
        keys.append(k)
        ends.append(time.monotonic())
        with counter.get_lock():
            counter.value += 1
            if counter.value >= total:
                all_ran.set()

    huey, _ = huey_app(db, sync, ran)
    consumer = Consumer(huey, workers=1)
    start.wait()
    began = time.monotonic()
    consumer.start()
    while not all_ran.wait(0.05):
        if counter.value >= total:  # another process ran the last one
            break
    consumer.stop(graceful=True)
    first_end, last_end = (ends[0], ends[-1]) if ends else (0.0, 0.0)
    out.put({"role": "consumer", "ids": keys, "began": began, "first_end": first_end,
             "last_end": last_end})  # fmt: skip


def huey_waiter(
    db: str, sync: str, ready: Event, stop: Event, acks: Connection, out: Queue[dict[str, Any]]
) -> None:
    """An idle consumer; each job's enqueue-to-start latency recorded in the task, an ack sent."""
    logging.getLogger("huey").setLevel(logging.WARNING)
    latencies: list[float] = []
    first: list[float] = []

    def ran(k: int, t0: float) -> None:
        now = time.monotonic()
        if not first:
            first.extend((time.process_time(), now))
        latencies.append(now - t0)
        acks.send(None)

    huey, _ = huey_app(db, sync, ran)
    consumer = Consumer(huey, workers=1)
    consumer.start()
    cpu_ready, t_ready = time.process_time(), time.monotonic()
    ready.set()
    stop.wait()
    consumer.stop(graceful=True)
    out.put({"latencies": latencies, "reserves": 0,
             "idle_cpu": (first[0] - cpu_ready) / (first[1] - t_ready)})  # fmt: skip
