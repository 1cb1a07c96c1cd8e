"""A dashboard on a memory broker behind Starlette's TestClient, and ways to seed it: jobs in
each state, dead letters, a worker's record, a workflow, a limit, a schedule."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from starlette.testclient import TestClient

from taskit import App, JobResult, MemoryBroker, Settings
from taskit.dashboard import dashboard
from taskit.job import Job, Lease, OutcomeKind
from taskit.job import Outcome as Settle
from taskit.limits import LimitSpec
from taskit.presence import RunningJob, WorkerInfo

T = TypeVar("T")

CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


def make_app() -> App:
    app = App(MemoryBroker(), settings=Settings())

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.periodic(every=3600, name="hourly")
    @app.task(name="tick")
    async def tick() -> None:
        return None

    return app


class Site:
    """``with Site() as site``: ``site.client`` talks to the dashboard, ``site.run`` runs broker
    calls on the client's event loop, ``site.post`` sends an action with the page's token."""

    def __init__(self, **options: Any) -> None:
        self.app = make_app()
        self.web = dashboard(self.app, **options)
        self.client = TestClient(self.web, base_url="http://dash.test")

    def __enter__(self) -> Site:
        self.client.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)

    @property
    def broker(self) -> MemoryBroker:
        broker = self.app.broker
        assert isinstance(broker, MemoryBroker)
        return broker

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.client.portal.call(fn, *args)  # type: ignore[union-attr]

    def token(self) -> str:
        found = CSRF.search(self.client.get("/queues").text)
        assert found is not None
        return found.group(1)

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        headers = {"X-CSRF-Token": self.token(), **headers}
        return self.client.post(path, json={} if body is None else body, headers=headers)

    # -- seeding -------------------------------------------------------------------------------
    def enqueue(self, *args: int, queue: str = "default", delay: float | None = None) -> Job:
        task = self.app.get_task("add").options(queue=queue)
        if delay is not None:
            return self.run(lambda: task.schedule(delay, *args))
        return self.run(lambda: task.enqueue(*args))

    def take(self, job: Job) -> Lease:
        """Lease ``job`` (the others leased on the way are handed back)."""

        async def go() -> Lease:
            leases = await self.broker.reserve([job.queue], count=1000, lease=30, timeout=0)
            (mine,) = [held for held in leases if held.job.id == job.id]
            others = [held for held in leases if held is not mine]
            await self.broker.settle([
                Settle(job_id=o.job.id, token=o.token, kind=OutcomeKind.RELEASE) for o in others
            ])  # fmt: skip
            return mine

        return self.run(go)

    def settle(self, job: Job, kind: OutcomeKind, **fields: Any) -> Job:
        """Lease ``job`` and settle it with ``kind``; the job as it is then."""
        lease = self.take(job)

        async def go() -> Job:
            outcome = Settle(job_id=job.id, token=lease.token, kind=kind, **fields)
            assert await self.broker.settle([outcome]) == [True]
            found = await self.broker.get(job.id)
            assert found is not None
            return found

        return self.run(go)

    def dead(self, *args: int, queue: str = "default") -> Job:
        job = self.enqueue(*args, queue=queue)
        return self.settle(job, OutcomeKind.DEAD_LETTER, error="boom", error_type="ValueError")

    def completed(self, *args: int, queue: str = "default") -> Job:
        job = self.enqueue(*args, queue=queue)
        return self.settle(
            job, OutcomeKind.COMPLETE, result=JobResult(success=True, value=sum(args))
        )

    def running(self, *args: int, queue: str = "default") -> Job:
        return self.take(self.enqueue(*args, queue=queue)).job

    def worker(self, name: str, jobs: list[Job]) -> None:
        now = datetime.now(UTC)
        info = WorkerInfo(
            name=name, host="host-1", pid=4242, queues=["default", "low"], concurrency=4,
            started_at=now, beat_at=now, running=len(jobs),
            jobs=[RunningJob(id=j.id, task=j.task, started_at=j.started_at) for j in jobs],
        )  # fmt: skip
        self.run(lambda: self.broker.announce(name, msgspec.json.encode(info), ttl=60))

    def limit(self, name: str, concurrency: int) -> None:
        self.run(lambda: self.broker.set_limits({name: LimitSpec(concurrency=concurrency)}))
