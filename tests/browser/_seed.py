"""Jobs in every state, put there through the real broker API (enqueue, reserve, settle,
cancel, announce, set_progress) as producers and workers would, from a synchronous test.

The broker runs on an event loop in another thread (an anyio ``BlockingPortal``): Playwright's
sync API owns the test's thread and refuses a running event loop there.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from anyio.from_thread import BlockingPortal

from taskit import App, JobStatus
from taskit.broker.redis import RedisBroker
from taskit.canvas import chain
from taskit.job import Job, JobResult, Lease, Outcome, OutcomeKind, Progress, ProgressUpdate
from taskit.limits import LimitSpec
from tests.browser._app import make_app

__all__ = ["Seeder"]

T = TypeVar("T")
#: Seconds a seeded lease lasts: the job stays RUNNING for the whole test.
LEASE = 3600.0
#: Seconds a seeded scheduled or retrying job waits: it stays so for the whole test.
LATER = 3600.0


class Seeder:
    """Seeds one key prefix of the Redis at ``url``; every call blocks until the broker
    answered. Jobs of task ``shop.resize`` (arguments ``path, width``) unless told otherwise.
    Each queue's ready jobs are the seeder's own: ``running`` reserves what it enqueued only
    when the queue held no other ready job (a fresh prefix per test)."""

    def __init__(self, portal: BlockingPortal, url: str, prefix: str) -> None:
        self.portal, self.url, self.prefix = portal, url, prefix
        self.app: App = make_app(url, prefix)
        self.broker = self.app.broker
        if not isinstance(self.broker, RedisBroker):  # pragma: no cover - make_app's choice
            raise TypeError("the browser tests seed a RedisBroker")

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` (a broker call) on the broker's event loop; its answer."""
        return self.portal.call(fn)

    def prepare(self, n: int, *, queue: str = "default", task: str = "shop.resize") -> list[Job]:
        """``n`` new jobs (not stored) of ``task`` on ``queue``, their arguments numbered."""
        variant = self.app.tasks[task].options(queue=queue)
        if task == "shop.send_email":
            return [variant.prepare(f"user{i}@example.com", f"order {i}") for i in range(n)]
        return [variant.prepare(f"/img/{i}.png", 640 + i) for i in range(n)]

    def enqueue(self, n: int = 1, *, queue: str = "default", task: str = "shop.resize",
                delay: float | None = None) -> list[Job]:  # fmt: skip
        """Store ``n`` jobs: PENDING, or SCHEDULED ``delay`` seconds ahead."""
        jobs = self.prepare(n, queue=queue, task=task)
        delays = None if delay is None else [delay] * n
        return self.call(lambda: self.broker.enqueue(jobs, delays=delays))

    def running(self, n: int = 1, *, queue: str = "default", task: str = "shop.resize",
                jobs: Sequence[Job] | None = None) -> list[Lease]:  # fmt: skip
        """Enqueue ``n`` jobs (or store ``jobs``) and reserve them: RUNNING under a lease."""
        stored = self.enqueue(n, queue=queue, task=task) if jobs is None else list(jobs)
        if jobs is not None:
            self.call(lambda: self.broker.enqueue(stored))
        leases = self.call(
            lambda: self.broker.reserve([queue], count=len(stored), lease=LEASE, timeout=0)
        )
        if {lease.job.id for lease in leases} != {job.id for job in stored}:
            raise AssertionError(f"queue {queue!r} held other ready jobs than the seeded ones")
        return leases

    def settle(self, leases: Sequence[Lease], kind: OutcomeKind, **fields: Any) -> None:
        """Settle every lease with an outcome of ``kind`` (and ``fields``); each must apply."""
        outcomes = [Outcome(job_id=x.job.id, token=x.token, kind=kind, **fields) for x in leases]
        applied = self.call(lambda: self.broker.settle(outcomes))
        if not all(applied):
            raise AssertionError(f"a seeded {kind} settle was refused: {applied}")

    def ended(self, n: int, kind: OutcomeKind, *, queue: str = "default",
              task: str = "shop.resize", **fields: Any) -> list[Job]:  # fmt: skip
        """``n`` jobs run once and settled with ``kind``; the jobs as they were reserved."""
        leases = self.running(n, queue=queue, task=task)
        self.settle(leases, kind, **fields)
        return [lease.job for lease in leases]

    def completed(self, n: int = 1, *, queue: str = "default") -> list[Job]:
        """``n`` COMPLETED jobs (result: the path)."""
        leases = self.running(n, queue=queue)
        outcomes = [
            Outcome(job_id=x.job.id, token=x.token, kind=OutcomeKind.COMPLETE,
                    result=JobResult(success=True, value=x.job.args[0], duration=0.012))
            for x in leases
        ]  # fmt: skip
        if not all(self.call(lambda: self.broker.settle(outcomes))):
            raise AssertionError("a seeded completion was refused")
        return [lease.job for lease in leases]

    def failed(self, n: int = 1, *, queue: str = "default") -> list[Job]:
        """``n`` FAILED jobs with an error and a traceback."""
        return self.ended(n, OutcomeKind.FAIL, queue=queue, **_error("image is too small"))

    def dead(self, n: int = 1, *, queue: str = "default", task: str = "shop.resize") -> list[Job]:
        """``n`` dead letters (their last error: a timeout)."""
        return self.ended(n, OutcomeKind.DEAD_LETTER, queue=queue, task=task,
                          **_error("gave up after 4 attempts"))  # fmt: skip

    def retrying(self, n: int = 1, *, queue: str = "default") -> list[Job]:
        """``n`` RETRYING jobs, due again ``LATER`` seconds ahead."""
        return self.ended(n, OutcomeKind.RETRY, queue=queue, delay=LATER,
                          **_error("connection reset"))  # fmt: skip

    def scheduled(self, n: int = 1, *, queue: str = "default") -> list[Job]:
        """``n`` SCHEDULED jobs, due ``LATER`` seconds ahead."""
        return self.enqueue(n, queue=queue, delay=LATER)

    def cancelled(self, n: int = 1, *, queue: str = "default") -> list[Job]:
        """``n`` jobs cancelled while they waited (CANCELLED, never run)."""
        jobs = self.enqueue(n, queue=queue)
        for job in jobs:
            self.cancel(job.id)
        return jobs

    def cancel(self, job_id: str) -> None:
        """Cancel one job (``Broker.cancel``); it must be cancellable."""
        if not self.call(lambda: self.broker.cancel(job_id)):
            raise AssertionError(f"cancel of job {job_id} was refused")

    def progress(self, lease: Lease, fraction: float, message: str) -> None:
        """Report ``fraction`` and ``message`` for the running ``lease`` (as its worker would)."""
        update = ProgressUpdate(
            lease.job.id, lease.token,
            Progress(updated_at=datetime.now(UTC), fraction=fraction, message=message),
        )  # fmt: skip
        if not self.call(lambda: self.broker.set_progress([update]))[0]:
            raise AssertionError(f"progress of seeded job {lease.job.id} was refused")

    def worker(self, name: str, leases: Sequence[Lease] = (), *,
               queues: Sequence[str] = ("default",), concurrency: int = 4) -> None:  # fmt: skip
        """Announce a live worker ``name`` running ``leases``' jobs (a presence record as
        ``taskit.presence`` writes it, with the jobs each runs and since when)."""
        now = datetime.now(UTC)
        record = {
            "name": name, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": list(queues), "concurrency": concurrency, "started_at": now,
            "beat_at": now, "running": len(leases), "jobs_done": 7,
            "jobs": [{"id": x.job.id, "task": x.job.task, "started_at": x.job.started_at or now}
                     for x in leases],
        }  # fmt: skip
        raw = msgspec.json.encode(record)
        self.call(lambda: self.broker.announce(name, raw, ttl=LEASE))

    def limit(self, name: str, concurrency: int) -> None:
        """Store the limit ``name`` (``Broker.set_limits``) with ``concurrency`` slots."""
        specs = {name: LimitSpec(concurrency=concurrency)}
        self.call(lambda: self.broker.set_limits(specs))

    def workflow(self) -> tuple[str, list[str]]:
        """A chain of two resizes, stored: (its workflow id, its node job ids, first first);
        the first node PENDING, the second DEFERRED behind it."""
        resize = self.app.tasks["shop.resize"]
        flow = chain(resize.s("/img/a.png", 320), resize.s("/img/b.png", 640))
        handle = self.call(flow.enqueue)
        state = self.call(handle.state)
        return handle.id, [node.id for node in state.nodes]

    def get(self, job_id: str) -> Job | None:
        """The job as the broker has it now."""
        return self.call(lambda: self.broker.get(job_id))

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status now (None: no record)."""
        job = self.get(job_id)
        return None if job is None else job.status

    def close(self) -> None:
        """Close the seeder's broker connections."""
        self.call(self.app.close)


def _error(message: str) -> dict[str, str]:
    """An outcome's error fields, as a worker writes them for a raised ValueError."""
    trace = (
        "Traceback (most recent call last):\n"
        '  File "shop/images.py", line 42, in resize\n'
        "    raise ValueError(message)\n"
        f"ValueError: {message}\n"
    )
    return {"error": message, "error_type": "ValueError", "traceback": trace}
