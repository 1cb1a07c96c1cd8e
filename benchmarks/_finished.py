"""What finished jobs keep in Redis: bytes per finished job with the broker's defaults, and the
steady-state memory that makes at a given rate (issue 19, target 6).

Each kind of end is measured on an emptied database: ``used_memory`` before, ``jobs`` small jobs
taken through enqueue, reserve and settle in batches (as a busy worker settles them, each with
the ``JobResult`` the executor makes), ``used_memory`` after. The delta counts everything the
ends leave behind: each job's done key (a hash with its expiry, its top-level key and its entry
in Redis's expiry table), its entry in the queue's index of that end, the queue's totals and
the per-minute counts. The record's TTL is read back (``PTTL``) so the figure is of the TTL the
defaults really give. Steady state: a job finished every ``1 / rate`` seconds is kept ``ttl``
seconds, so ``rate * ttl`` records are held at any moment, each of the measured size.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from taskit.broker.redis import RedisBroker
from taskit.job import Job, JobResult, Lease, Outcome, OutcomeKind

__all__ = ["Finished", "measure_finished"]

#: Jobs per enqueue, reserve and settle call.
BATCH = 500
LEASE = 60.0


@dataclass(frozen=True)
class Finished:
    """One kind of end: the bytes each finished job keeps and how long (the record's TTL)."""

    label: str
    bytes_per_job: float
    done_key_bytes: int  # MEMORY USAGE of one done key
    index_bytes_per_job: float  # MEMORY USAGE of the end's index over the jobs measured
    ttl: float  # seconds, as read back from one done key

    def steady_state(self, rate: float) -> float:
        """Bytes held at ``rate`` finished jobs a second, each kept ``ttl`` seconds."""
        return self.bytes_per_job * rate * self.ttl


#: (label, outcome kind, what the handler returned or raised)
KINDS: tuple[tuple[str, OutcomeKind, object], ...] = (
    ("completed, returned None", OutcomeKind.COMPLETE, None),
    ("completed, returned a small dict", OutcomeKind.COMPLETE, {"sent": True, "id": 123456}),
    ("failed (Fail raised)", OutcomeKind.FAIL, "ValueError: no such template 'welcome'"),
)


def _end(held: Lease, kind: OutcomeKind, value: object) -> Outcome:
    """The outcome the executor makes for ``held`` (a 1.2 ms run), as a worker settles it."""
    if kind is OutcomeKind.COMPLETE:
        result = JobResult(success=True, value=value, duration=0.0012)
        return Outcome(job_id=held.job.id, token=held.token, kind=kind, result=result)
    error = str(value)
    trace = f'Traceback (most recent call last):\n  File "app/tasks.py", line 42\n{error}\n'
    return Outcome(
        job_id=held.job.id, token=held.token, kind=kind, error=error,
        error_type="ValueError", traceback=trace,
    )  # fmt: skip


async def _one_kind(
    broker: RedisBroker, client: Redis, jobs: list[Job], kind: OutcomeKind, value: object
) -> tuple[float, int, float, float]:
    queue = jobs[0].queue
    await client.flushdb()
    await broker.stats([queue])  # scripts loaded, clients made: not part of the delta
    before = int((await client.info("memory"))["used_memory"])
    for start in range(0, len(jobs), BATCH):
        await broker.enqueue(jobs[start : start + BATCH])
        held = await broker.reserve([queue], count=BATCH, lease=LEASE, timeout=0)
        applied = await broker.settle([_end(h, kind, value) for h in held])
        if len(applied) != len(jobs[start : start + BATCH]) or not all(applied):
            raise RuntimeError(f"a batch of {kind.value} was not settled whole: {applied}")
    after = int((await client.info("memory"))["used_memory"])
    keys = broker.keys
    last = jobs[-1].id
    done = await client.memory_usage(keys.done(last), samples=0) or 0
    ttl_ms = await client.pttl(keys.done(last))
    if ttl_ms <= 0:
        raise RuntimeError(f"job {last}'s record has no expiry ({ttl_ms})")
    index = keys.queue(queue, "completed" if kind is OutcomeKind.COMPLETE else "failed")
    index_bytes = await client.memory_usage(index, samples=0) or 0
    return (after - before) / len(jobs), done, index_bytes / len(jobs), ttl_ms / 1000


async def measure_finished(url: str, jobs: list[Job]) -> list[Finished]:
    """Each end of ``KINDS`` over ``jobs`` (one queue), on a broker with the default settings.
    Empties the database at ``url`` before each kind."""
    client = Redis.from_url(url)
    broker = RedisBroker(url)  # result_ttl and the rest from Settings()'s defaults
    out: list[Finished] = []
    try:
        for label, kind, value in KINDS:
            per_job, done, index, ttl = await _one_kind(broker, client, jobs, kind, value)
            out.append(Finished(label, per_job, done, index, ttl))
        await client.flushdb()
    finally:
        await broker.close()
        await client.aclose()
    return out
