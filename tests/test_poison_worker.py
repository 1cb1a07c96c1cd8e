"""A worker meeting poison records (issue 11, item 1): it drains the good jobs, dead-letters the
poison with a reason and keeps running; ``get_job`` and ``taskit job`` give a clear error, and
``taskit dlq list`` shows the reason.

Real Redis: the defect was a bare ``ValueError`` out of the Redis broker's reserve (a state
field holding a value the layout never writes), which ended the worker's fetch loop.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import redis
import redis.asyncio

from taskit import App, CorruptJobError, JobStatus
from taskit.broker.redis import RedisBroker
from taskit.broker.redis.records import join_record, split_record
from tests._poison_app import poison_app
from tests.apps import ops_app

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(redis_url: str) -> AsyncIterator[App]:
    async with poison_app(redis_url, "poison") as made:
        yield made


async def set_field(app: App, client: redis.asyncio.Redis, job_id: str, i: int, v: bytes) -> None:
    """Overwrite state field ``i`` of a live record with ``v``."""
    keys = app.broker.keys  # type: ignore[attr-defined]
    state, spec = split_record(await client.hget(keys.jobs, job_id))
    fields = state.split(b"|", 10)
    fields[i] = v
    await client.hset(keys.jobs, job_id, join_record(b"|".join(fields), spec))


async def test_a_worker_dead_letters_poison_records_and_keeps_running(
    app: App, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    add = app.tasks["add"]
    # One poison leased by a worker that died (the reaper meets it), one ready, one due.
    crashed = await add.enqueue(0, 0)
    assert await app.broker.reserve(["default"], count=1, lease=0.2, timeout=0)
    await set_field(app, client, crashed.id, 1, b"1.5")  # attempts
    ready = await add.enqueue(0, 1)
    await set_field(app, client, ready.id, 1, b"1.5")
    due = await add.schedule(0.3, 0, 2)  # seconds from now
    await set_field(app, client, due.id, 6, b"not-a-time")  # sched
    good = [await add.enqueue(i, i) for i in range(5)]
    worker = app.worker(concurrency=2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(10):
            while True:
                jobs = [await app.get_job(j.id) for j in good]
                dead = {j.id: j for j in await app.broker.dead_letters("default")}
                if all(j and j.status is JobStatus.COMPLETED for j in jobs) and len(dead) == 3:
                    break
                await anyio.sleep(0.05)
        late = await add.enqueue(20, 22)  # the worker still runs: it takes a new job
        assert (await app.result(late.id, timeout=5)).value == 42
        worker.stop()

    assert set(dead) == {crashed.id, ready.id, due.id}
    assert "attempts '1.5'" in (dead[ready.id].error or "")
    assert "sched 'not-a-time'" in (dead[due.id].error or "")
    assert "attempts '1.5'" in (dead[crashed.id].error or "")
    assert all(dead[i].error_type == "CorruptJobError" for i in dead)
    stats = (await app.stats(["default"]))["default"]
    assert (stats.running, stats.queued, stats.dead) == (0, 0, 3)
    await client.aclose()


async def test_get_job_of_a_poison_record_names_the_job_and_field(app: App, redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    job = await app.tasks["add"].enqueue(1, 2)
    await set_field(app, client, job.id, 1, b"1.5")

    with pytest.raises(CorruptJobError, match="attempts") as caught:
        await app.get_job(job.id)

    assert (caught.value.job_id, caught.value.field) == (job.id, "attempts")
    with pytest.raises(CorruptJobError, match="attempts"):
        await app.cancel(job.id)  # its queue cannot be trusted: nothing changes
    await client.hset(app.broker.keys.jobs, job.id, b"garbage")  # type: ignore[attr-defined]
    with pytest.raises(CorruptJobError, match="record"):
        await app.get_job(job.id)
    await client.aclose()


def test_the_admin_cli_names_a_poison_record_and_lists_it_once_dead(redis_url: str) -> None:
    from tests.test_admin_cli import APP, ok, run_worker, taskit

    saved = ops_app.app.broker
    ops_app.app.broker = broker = RedisBroker(redis_url, prefix=f"ops-{uuid.uuid4().hex[:10]}")
    client = redis.Redis.from_url(redis_url)
    try:
        job_id = ok("enqueue", APP, "ops.add", "--args", "[1, 2]").strip()
        state, spec = split_record(client.hget(broker.keys.jobs, job_id))
        fields = state.split(b"|", 10)
        fields[6] = b"not-a-time"  # sched
        client.hset(broker.keys.jobs, job_id, join_record(b"|".join(fields), spec))

        shown = taskit("job", APP, "--", job_id)  # ("--": an id may start with "-")
        assert shown.exit_code == 1
        assert f"job {job_id!r} has an unreadable stored record: sched" in shown.output
        assert "Traceback" not in shown.output
        run_worker()  # burst: meets the poison, dead-letters it, returns
        listed = ok("dlq", "list", APP)
        assert job_id in listed
        assert "job record unreadable: sched" in listed
        assert ok("info", APP).splitlines()[1].split() == ["default", "0", "0", "0", "0", "0", "1"]
        assert ok("dlq", "requeue", APP, "--all").strip() == "requeued 1 job"  # state rebuilt
        run_worker()
        assert "status:       completed" in ok("job", APP, "--", job_id)
    finally:
        ops_app.app.broker = saved
        doomed = list(client.scan_iter(match=broker.keys.pattern(), count=500))
        if doomed:
            client.delete(*doomed)
        client.close()
