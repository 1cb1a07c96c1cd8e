"""Stopping workers: catalogue rows 3 (SIGTERM, grace longer than the jobs), 4 (SIGTERM, grace
shorter than the jobs) and 5 (SIGTERM then SIGKILL)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import pytest

from taskit import App, JobStatus
from tests.chaos.harness import Cluster, cluster, consistency_problems, log_time, wait_until
from tests.chaos.producing import enqueue_work

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def started(chaos: Cluster, pid: int) -> int:
    return sum(1 for e in chaos.entries() if e.kind == "S" and e.pid == pid)


async def drain(chaos: Cluster, app: App, acked: list[str]) -> None:
    chaos.spawn("-c", "8")
    for key in acked:
        await app.result(key, timeout=30)


async def test_row3_sigterm_with_a_long_grace_finishes_running_jobs_and_reserves_nothing(
    chaos: Cluster, producer: App
) -> None:
    worker = chaos.spawn("-c", "4")
    acked = await enqueue_work(producer, [f"t{i}" for i in range(40)], 0.4)
    wait_until(lambda: started(chaos, worker.pid) >= 4, 20, what="four starts")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=30) == 0
    signalled = log_time(worker.wait_for_line("stopping gracefully"))
    mine = [e for e in chaos.entries() if e.pid == worker.pid]
    reserved_after = [e for e in mine if e.kind == "R" and e.at > signalled + 0.001]
    assert reserved_after == [], "reserved after the signal"
    starts = {e.job_id for e in mine if e.kind == "S"}
    ends = {e.job_id for e in mine if e.kind == "E" and e.outcome == "ok"}
    assert starts == ends  # every job it started, it finished
    applied = {e.job_id for e in mine if e.kind == "X" and e.applied == "1"}
    assert starts <= applied
    assert not [e for e in mine if e.kind == "X" and e.outcome == "release"]
    await drain(chaos, producer, acked)
    chaos.report(acked).assert_clean()


async def test_row4_sigterm_with_a_short_grace_hands_jobs_back_at_once(tmp_path: Path) -> None:
    # A long lease: a job that was not handed back would sit RUNNING for 60 s.
    with cluster(tmp_path, visibility_timeout=60.0, grace_period=1.0) as chaos:
        app = App(chaos.url)
        try:
            worker = chaos.spawn("-c", "3")
            acked = await enqueue_work(app, ["a", "b", "c"], 30.0)
            wait_until(lambda: started(chaos, worker.pid) == 3, 20, what="three starts")
            signalled = chaos.kill(worker, signal.SIGTERM)
            assert worker.proc.wait(timeout=20) == 0
            back = time.time() - signalled
            for key in acked:
                job = await app.get_job(key)
                assert job is not None
                assert job.status is JobStatus.PENDING  # back in the queue, not after a lease
                assert job.attempts == 0  # a release refunds the attempt
            assert back < 1.0 + 3.0  # the grace, plus slack for a busy machine
            released = [e for e in chaos.entries() if e.kind == "X" and e.outcome == "release"]
            assert sorted(e.job_id for e in released if e.applied == "1") == ["a", "b", "c"]
            client = chaos.client()
            assert consistency_problems(client, ["default"]) == []
            client.close()
            print(f"row 4: handed back {back:.2f} s after SIGTERM (grace 1 s, lease 60 s)")
        finally:
            await app.close()


async def test_row5_sigterm_then_sigkill_loses_nothing_and_leaves_no_half_moved_job(
    chaos: Cluster, producer: App
) -> None:
    worker = chaos.spawn("-c", "4")
    acked = await enqueue_work(producer, [f"k{i}" for i in range(30)], 0.3)
    wait_until(lambda: started(chaos, worker.pid) >= 4, 20, what="four starts")
    worker.proc.send_signal(signal.SIGTERM)
    await anyio.sleep(0.2)
    chaos.kill(worker)
    client = chaos.client()
    try:
        assert consistency_problems(client, ["default"]) == []
    finally:
        client.close()
    await drain(chaos, producer, acked)
    chaos.report(acked).assert_clean()
