"""The processes of ``benchmarks/sqlite_probe.py`` for the native-SQL design (``_sqlite_jobs``).

Each runs in a process of its own (started with ``spawn``), opens its own connection, waits at
the barrier with the others and reports one dict on ``out``: its ids (for the exact count), the
wall time of each call (``perf_counter``, lock waits included) and the ``time.monotonic()``
moments the runner spans (one clock for every process on the machine).
"""

from __future__ import annotations

import random
import struct
import time
import uuid
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

from benchmarks._sqlite_jobs import JobTable
from benchmarks._sqlite_wake import make_notifier, make_waiter

__all__ = ["latency_driver", "spec", "sql_consumer", "sql_producer", "sql_waiter"]

PAD = bytes(92)  # a spec of 100 bytes, about a small taskit job record


def spec(t0: float = 0.0) -> bytes:
    """A job's spec: the enqueue moment (for latency) and padding."""
    return struct.pack("<d", t0) + PAD


def sql_producer(
    db: str,
    table_opts: dict[str, str],
    count: int,
    batch: int,
    start: Barrier,
    out: Queue[dict[str, Any]],
) -> None:
    """Enqueue ``count`` jobs, one per call (``batch`` 1) or ``batch`` per call."""
    table = JobTable(db, **table_opts)
    ids: list[str] = []
    calls: list[float] = []
    start.wait()
    began = time.monotonic()
    if batch == 1:
        for _ in range(count):
            t = time.perf_counter()
            job_id = uuid.uuid4().hex
            table.enqueue(job_id, spec())
            calls.append(time.perf_counter() - t)
            ids.append(job_id)
    else:
        for first in range(0, count, batch):
            t = time.perf_counter()
            jobs = [(uuid.uuid4().hex, spec()) for _ in range(min(batch, count - first))]
            table.enqueue_many(jobs)
            calls.append(time.perf_counter() - t)
            ids.extend(i for i, _ in jobs)
    ended = time.monotonic()
    table.close()
    out.put({"role": "producer", "ids": ids, "calls": calls, "began": began, "ended": ended})


def sql_consumer(
    db: str,
    table_opts: dict[str, str],
    limit: int,
    move: bool,
    producers_done: Event | None,
    start: Barrier,
    out: Queue[dict[str, Any]],
) -> None:
    """Reserve up to ``limit`` jobs a call and complete each (one transaction each) until the
    queue is empty (after the producers finished, when there are producers)."""
    table = JobTable(db, **table_opts)
    complete = table.complete_move if move else table.complete
    ids: list[str] = []
    reserves: list[float] = []
    settles: list[float] = []
    first_end = last_end = 0.0
    idle = lost = 0
    start.wait()
    began = time.monotonic()
    while True:
        finished = producers_done is None or producers_done.is_set()
        t = time.perf_counter()
        jobs = table.reserve(limit)
        reserves.append(time.perf_counter() - t)
        if not jobs:
            if finished:
                break
            idle += 1
            time.sleep(0.001)
            continue
        for job in jobs:
            t = time.perf_counter()
            ok = complete(job, b"null")
            settles.append(time.perf_counter() - t)
            if ok:
                ids.append(job.id)
            else:
                lost += 1
            last_end = time.monotonic()
            first_end = first_end or last_end
    table.close()
    out.put({"role": "consumer", "ids": ids, "reserves": reserves, "settles": settles,
             "began": began, "first_end": first_end, "last_end": last_end,
             "idle_reserves": idle, "refused_settles": lost})  # fmt: skip


def sql_waiter(
    db: str, method: str, ready: Event, stop: Event, acks: Connection, out: Queue[dict[str, Any]]
) -> None:
    """An idle worker: reserve one job, and when there is none wait by ``method``; each job's
    enqueue-to-start latency (its spec's ``t0`` to the reserve's return) recorded, an ack sent."""
    table = JobTable(db)
    waiter = make_waiter(method, Path(db), table.data_version)
    latencies: list[float] = []
    reserves = 0
    cpu_ready, t_ready = time.process_time(), time.monotonic()
    cpu_first = t_first = 0.0
    ready.set()
    while not stop.is_set():
        waiter.prepare()
        jobs = table.reserve(1)
        reserves += 1
        if not jobs:
            waiter.wait(1.0)
            continue
        now = time.monotonic()
        if not t_first:
            cpu_first, t_first = time.process_time(), now
        for job in jobs:
            latencies.append(now - struct.unpack_from("<d", job.spec)[0])
            table.complete(job, b"null")
        acks.send(None)
    waiter.close()
    table.close()
    out.put({"latencies": latencies, "reserves": reserves,
             "idle_cpu": (cpu_first - cpu_ready) / (t_first - t_ready)})  # fmt: skip


def latency_driver(
    db: str, method: str, probes: int, warmup: int, acks: Connection, stop: Event
) -> list[float]:
    """The producer's side, in the runner: after a 1 s idle window, one job at a time, waiting
    for its ack and 2-12 ms more; returns the notify calls' wall times."""
    table = JobTable(db)
    notifier = make_notifier(method, Path(db))
    notifies: list[float] = []
    time.sleep(1.0)
    for _ in range(warmup + probes):
        table.enqueue(uuid.uuid4().hex, spec(time.monotonic()))
        t = time.perf_counter()
        notifier.notify()
        notifies.append(time.perf_counter() - t)
        acks.recv()
        time.sleep(random.uniform(0.002, 0.012))
    stop.set()
    notifier.notify()
    notifier.close()
    table.close()
    return notifies
