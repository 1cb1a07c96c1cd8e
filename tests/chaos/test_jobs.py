"""What jobs carry and ask for: catalogue rows 11 (poison data), 15 (a delay much longer than the
lease) and 16 (cancel: running, queued, finished)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import msgspec
import pytest

from taskit import App, JobStatus
from taskit.broker.redis.keys import Keys
from taskit.broker.redis.records import join_record
from tests.chaos.harness import PREFIX, Cluster, cluster, wait_until
from tests.chaos.producing import enqueue_work

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SLACK = 2.0


def plant(chaos: Cluster, job_id: str, spec: bytes | None) -> None:
    """Write a PENDING job straight into Redis (``spec`` None: a ready entry with no record)."""
    k = Keys(PREFIX)
    client = chaos.client()
    try:
        if spec is not None:
            client.hset(k.jobs, job_id, join_record(b"pending|0|0||||||||default", spec))
        client.rpush(k.fifo("default"), job_id)
        client.sadd(k.queues, "default")
    finally:
        client.close()


async def test_row11_poison_is_dead_lettered_on_attempt_one_and_the_worker_goes_on(
    chaos: Cluster, producer: App
) -> None:
    plant(chaos, "garbage", b"\xc1\xff\x00 not msgpack")
    plant(chaos, "wrong-schema", msgspec.msgpack.encode({"v": 99, "id": "x"}))
    plant(chaos, "dangling", None)
    unknown = await producer.remote("no.such.task").options(job_id="unknown-task").enqueue(1)
    acked = await enqueue_work(producer, [f"p{i}" for i in range(20)], 0.01)
    worker = chaos.spawn("-c", "4")
    for key in acked:
        assert (await producer.result(key, timeout=30)).success
    poison = ["garbage", "wrong-schema", "dangling", unknown.id]
    for job_id in poison:
        job = await producer.get_job(job_id)
        for _ in range(200):  # the dead-lettering may trail the other jobs a little
            if job is not None and job.status.finished:
                break
            await anyio.sleep(0.05)
            job = await producer.get_job(job_id)
        assert job is not None, job_id
        assert job.status is JobStatus.DEAD_LETTER, job_id
        assert job.attempts == 1, job_id
        assert job.error, job_id
    dead = {j.id: j.error or "" for j in await producer.broker.dead_letters("default")}
    assert set(dead) == set(poison)
    assert "does not decode" in dead["garbage"]
    assert "does not decode" in dead["wrong-schema"]
    assert "record missing" in dead["dangling"]
    assert "unknown task" in dead[unknown.id]
    assert worker.proc.poll() is None
    assert "Traceback" not in worker.log
    chaos.report(acked).assert_clean()


async def test_row15_a_delay_far_past_the_lease_runs_once_at_its_time(tmp_path: Path) -> None:
    with cluster(tmp_path, visibility_timeout=0.5, reaper_interval=0.2) as chaos:
        await _delay_far_past_the_lease(chaos)


async def _delay_far_past_the_lease(chaos: Cluster) -> None:
    app = App(chaos.url)
    try:
        chaos.spawn("-c", "2")
        job = await app.remote("chaos.work").options(job_id="later").schedule(3.0, "later", 0.01)
        assert job.scheduled_at is not None
        await app.result("later", timeout=30)
        final = await app.get_job("later")
    finally:
        await app.close()
    assert final is not None
    assert final.started_at is not None
    assert final.started_at >= job.scheduled_at  # both on the server's clock
    assert final.attempts == 1
    assert len([e for e in chaos.entries() if e.kind == "S"]) == 1


async def test_row16_cancel_running_queued_and_finished(chaos: Cluster, producer: App) -> None:
    chaos.spawn("-c", "2")
    await enqueue_work(producer, ["done"], 0.01)
    await producer.result("done", timeout=20)
    await enqueue_work(producer, ["running"], 30.0)
    queued = await producer.remote("chaos.work").options(job_id="queued").schedule(1.0, "q", 0.0)

    wait_until(lambda: any(e.kind == "S" and e.job_id == "running" for e in chaos.entries()), 20)
    asked = time.time()
    assert await producer.cancel("running")
    assert await producer.cancel(queued.id)
    assert not await producer.cancel("done")  # finished: a no-op

    result = await producer.result("running", timeout=20)
    assert not result.success
    ended = [e for e in chaos.entries() if e.kind == "E" and e.job_id == "running"]
    assert len(ended) == 1
    heartbeat = chaos.lease / 3
    assert ended[0].at - asked <= heartbeat + SLACK, ended[0].at - asked
    await anyio.sleep(1.5)  # past the queued job's due time
    for job_id, status in (("running", JobStatus.CANCELLED), ("queued", JobStatus.CANCELLED),
                           ("done", JobStatus.COMPLETED)):  # fmt: skip
        job = await producer.get_job(job_id)
        assert job is not None
        assert job.status is status, job_id
    starts = [e.job_id for e in chaos.entries() if e.kind == "S"]
    assert sorted(starts) == ["done", "running"]  # not retried; the queued one never ran
