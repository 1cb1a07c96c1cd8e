"""The calls and processes of ``benchmarks/sqlite_lua_probe.py``: the Redis broker's enqueue,
reserve and settle scripts over ``_redis_sqlite.SqliteRedis``, with the requests built as
``RedisBroker`` builds them (``taskit.broker.redis.requests``: the same keys, arguments and reply
parsing), and the producer and consumer processes (as ``_sqlite_procs``' ones: spawned, started
together at a barrier, one dict each on ``out`` with their ids and call times).
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import msgspec

from benchmarks._redis_sqlite import SqliteRedis
from taskit._storable import storable
from taskit.broker.redis import requests
from taskit.broker.redis.broker import stored_form
from taskit.broker.redis.keys import Keys
from taskit.broker.redis.records import split_token
from taskit.broker.redis.scripts import SCRIPTS
from taskit.job import Job, JobResult, Lease, Outcome, OutcomeKind

__all__ = ["LuaJobs", "lua_consumer", "lua_producer", "make_job"]

PREFIX = "taskit"
QUEUE = "default"
TTL_MS = 3_600_000  # the broker's result TTL
LEASE_MS = 60_000
PAYLOAD = msgspec.Raw(msgspec.msgpack.encode(list(range(20))))


def make_job(queue: str = QUEUE, priority: int = 0) -> Job:
    """A small job as ``Task.prepare`` makes one: fresh, with a random id."""
    return Job(id=uuid.uuid4().hex, task="probe", queue=queue, payload=PAYLOAD,
               created_at=datetime.now(UTC), priority=priority)  # fmt: skip


class LuaJobs:
    """Enqueue, reserve and settle on one connection, each one script call (one transaction)."""

    def __init__(self, db: str, sync: str = "NORMAL") -> None:
        self.redis = SqliteRedis(db, sync)
        self.keys = Keys(PREFIX)

    def create(self) -> None:
        self.redis.create()

    def close(self) -> None:
        self.redis.close()

    def _run(self, request: Any) -> Any:
        raw = self.redis.eval(SCRIPTS[request.script], request.keys(self.keys), request.args())
        return request.answer(raw)

    def enqueue(self, jobs: list[Job], delays_ms: list[int] | None = None) -> list[Any]:
        forms = [stored_form(job) for job in jobs]
        request = requests.Enqueue(jobs, forms, delays_ms or [0] * len(jobs),
                                   [job.queue for job in jobs], TTL_MS)  # fmt: skip
        got = self._run(request)
        if not isinstance(got, list):
            raise RuntimeError(f"enqueue answered {got!r}")
        return got

    def reserve(self, count: int, queues: tuple[str, ...] = (QUEUE,)) -> list[Lease]:
        got = self._run(requests.Reserve(queues, count, LEASE_MS, secrets.token_hex(16)))
        if got.settle:
            raise RuntimeError(f"reserve found unreadable records: {got.settle!r}")
        return list(got.leases)

    def settle(self, outcomes: list[Outcome]) -> list[bool]:
        """As ``RedisBroker.settle`` sends them (every outcome one of ours)."""
        each: list[tuple[str, str, str, str, int, bytes, bytes]] = []
        for given in outcomes:
            checked = storable(given)
            parts = split_token(given.token)
            if checked is None or parts is None:
                raise RuntimeError(f"not a lease of this broker: {given!r}")
            outcome, result = checked
            error = b""
            if outcome.error is not None:
                error = msgspec.msgpack.encode((outcome.error, outcome.error_type, None))
            each.append((outcome.job_id, parts[0], outcome.kind.value, parts[1],
                         int(outcome.delay * 1000), error, result))  # fmt: skip
        applied, _ = self._run(requests.Settle(TTL_MS, each, [None] * len(each)))
        return list(applied)

    def complete(self, leases: list[Lease]) -> list[bool]:
        return self.settle([Outcome(job_id=lease.job.id, token=lease.token,
                                    kind=OutcomeKind.COMPLETE,
                                    result=JobResult(success=True, value=None))
                            for lease in leases])  # fmt: skip

    def stored(self) -> int:
        """Live jobs: the jobs hash's size."""
        return self.redis.hlen(self.keys.jobs)


def lua_producer(
    db: str, sync: str, count: int, batch: int, start: Barrier, out: Queue[dict[str, Any]]
) -> None:
    """Enqueue ``count`` jobs, ``batch`` a call."""
    jobs = LuaJobs(db, sync)
    ids: list[str] = []
    calls: list[float] = []
    start.wait()
    began = time.monotonic()
    for first in range(0, count, batch):
        t = time.perf_counter()
        some = [make_job() for _ in range(min(batch, count - first))]
        jobs.enqueue(some)
        calls.append(time.perf_counter() - t)
        ids.extend(job.id for job in some)
    ended = time.monotonic()
    statements = jobs.redis.statements
    jobs.close()
    out.put({"role": "producer", "ids": ids, "calls": calls, "began": began, "ended": ended,
             "statements": statements})  # fmt: skip


def lua_consumer(
    db: str,
    sync: str,
    limit: int,
    settle_batch: bool,
    producers_done: Event | None,
    start: Barrier,
    out: Queue[dict[str, Any]],
) -> None:
    """Reserve up to ``limit`` jobs a call and complete them (one settle call each, or one for
    the whole reserve when ``settle_batch``) until the queue is empty (after the producers
    finished, when there are producers)."""
    jobs = LuaJobs(db, sync)
    ids: list[str] = []
    reserves: list[float] = []
    settles: list[float] = []
    first_end = last_end = 0.0
    idle = lost = 0
    reserve_statements = settle_statements = 0
    start.wait()
    began = time.monotonic()
    while True:
        finished = producers_done is None or producers_done.is_set()
        t, s = time.perf_counter(), jobs.redis.statements
        leases = jobs.reserve(limit)
        reserves.append(time.perf_counter() - t)
        reserve_statements += jobs.redis.statements - s
        if not leases:
            if finished:
                break
            idle += 1
            time.sleep(0.001)
            continue
        for group in [leases] if settle_batch else [[lease] for lease in leases]:
            t, s = time.perf_counter(), jobs.redis.statements
            applied = jobs.complete(group)
            settles.append(time.perf_counter() - t)
            settle_statements += jobs.redis.statements - s
            for lease, ok in zip(group, applied, strict=True):
                if ok:
                    ids.append(lease.job.id)
                else:
                    lost += 1
            last_end = time.monotonic()
            first_end = first_end or last_end
    jobs.close()
    out.put({"role": "consumer", "ids": ids, "reserves": reserves, "settles": settles,
             "began": began, "first_end": first_end, "last_end": last_end,
             "idle_reserves": idle, "refused_settles": lost,
             "reserve_statements": reserve_statements,
             "settle_statements": settle_statements})  # fmt: skip
