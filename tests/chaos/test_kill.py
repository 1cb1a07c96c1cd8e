"""Workers that die or stall: catalogue rows 1 (SIGKILL mid-job), 2 (kill storm), 6 (lease expires
while the handler runs), 7 (heartbeat) and 12 (crash-looping handler)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from taskit import App, JobStatus
from taskit.job import Outcome, OutcomeKind
from tests.chaos.harness import Cluster, cluster, wait_until
from tests.chaos.producing import enqueue_work

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

#: Extra seconds allowed over a timing bound: 2 shared cores, other test runs beside us.
SLACK = 2.0


def starts(chaos: Cluster, job_id: str) -> list[tuple[int, float]]:
    return [(e.pid, e.at) for e in chaos.entries() if e.kind == "S" and e.job_id == job_id]


async def test_row1_sigkill_mid_job_reruns_once_within_lease_plus_reaper(
    chaos: Cluster, producer: App
) -> None:
    victim = chaos.spawn("-c", "2")
    await enqueue_work(producer, ["long"], 3.0)
    wait_until(lambda: starts(chaos, "long"), 20, what="the first start")
    survivor = chaos.spawn("-c", "2")
    killed_at = chaos.kill(victim)
    result = await producer.result("long", timeout=30)
    assert result.success
    runs = starts(chaos, "long")
    assert [pid for pid, _ in runs] == [victim.pid, survivor.pid]
    recovery = runs[1][1] - killed_at
    assert recovery <= chaos.lease + chaos.reaper + SLACK, recovery
    job = await producer.get_job("long")
    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.attempts == 2
    # The dead worker's token never acks, not even now.
    dead_token = next(e.token for e in chaos.entries() if e.kind == "R" and e.pid == victim.pid)
    stale = Outcome(job_id="long", token=dead_token, kind=OutcomeKind.COMPLETE)
    assert await producer.broker.settle([stale]) == [False]
    report = chaos.report(["long"])
    report.assert_clean()
    print(f"row 1: recovery {recovery:.2f} s (bound {chaos.lease + chaos.reaper:.1f} s)")


async def test_row6_stalled_handler_loses_its_lease_and_its_ack_is_rejected(
    chaos: Cluster, producer: App
) -> None:
    """An async handler blocks the event loop past the lease: no heartbeat. Another worker
    reclaims and runs it; the stalled worker's late ack is rejected and changes nothing."""
    stalled = chaos.spawn("-c", "1")
    job = await producer.remote("chaos.stall").options(job_id="stall").enqueue("stall", 5.0)
    wait_until(lambda: starts(chaos, "stall"), 20, what="the first start")
    other = chaos.spawn("-c", "1")
    result = await producer.result(job.id, timeout=30)
    assert result.success
    wait_until(
        lambda: any(e.kind == "X" and e.pid == stalled.pid for e in chaos.entries()),
        20,
        what="the stalled worker's settle",
    )
    runs = starts(chaos, "stall")
    assert [pid for pid, _ in runs] == [stalled.pid, other.pid]
    settles = [e for e in chaos.entries() if e.kind == "X" and e.job_id == "stall"]
    by_pid = {e.pid: e for e in settles if e.outcome == "complete"}
    assert by_pid[other.pid].applied == "1"
    assert by_pid[stalled.pid].applied == "0"  # fenced: the lease had passed on
    final = await producer.get_job("stall")
    assert final is not None
    assert final.status is JobStatus.COMPLETED
    assert final.attempts == 2
    report = chaos.report(["stall"])
    report.assert_clean()
    assert stalled.proc.poll() is None, "a stalled worker must recover, not die"


async def test_row7_heartbeat_keeps_a_job_of_many_leases_on_one_worker(tmp_path: Path) -> None:
    with cluster(tmp_path, visibility_timeout=0.6, reaper_interval=0.2) as chaos:
        app = App(chaos.url)
        try:
            chaos.spawn("-c", "1")
            chaos.spawn("-c", "1")
            await enqueue_work(app, ["hb"], 4.0)  # six or seven leases long
            assert (await app.result("hb", timeout=30)).success
            job = await app.get_job("hb")
        finally:
            await app.close()
        assert job is not None
        assert job.attempts == 1
        assert len(starts(chaos, "hb")) == 1
        assert not [e for e in chaos.entries() if e.kind == "C"], "a live lease was reclaimed"


async def test_row12_crash_looping_handler_is_dead_lettered_after_max_retries(
    chaos: Cluster, producer: App
) -> None:
    """``chaos.crash`` (max_retries=2) kills its worker on every run; workers are respawned.
    It ends in the dead letters after exactly three runs, and the other jobs drain."""
    for _ in range(2):
        chaos.spawn("-c", "2", wait=False)
    acked = await enqueue_work(producer, [f"ok{i}" for i in range(30)], 0.05)
    # max_retries travels on the job: a producer that does not import the task must say it.
    crash = (
        await producer.remote("chaos.crash", max_retries=2).options(job_id="crash").enqueue("crash")
    )
    acked.append(crash.id)
    with anyio.fail_after(60):
        while True:
            for _ in chaos.reap_crashed():
                chaos.spawn("-c", "2", wait=False)
            job = await producer.get_job("crash")
            assert job is not None
            if job.status is JobStatus.DEAD_LETTER:
                break
            await anyio.sleep(0.1)
    assert job.attempts == 3
    assert "lease expired" in (job.error or "")
    assert len(starts(chaos, "crash")) == 3
    for key in acked[:-1]:
        assert (await producer.result(key, timeout=30)).success
    report = chaos.report(acked)
    report.assert_clean()


async def test_row2_kill_storm(tmp_path: Path) -> None:
    """Short mode: 3 workers, 400 jobs of 10-300 ms, a random worker SIGKILLed and respawned
    every second. ``tests.chaos`` (long mode) runs the same storm far longer."""
    from tests.chaos.storm import run_storm

    figures = await run_storm(tmp_path, jobs=400, workers=3, kill_every=1.0, seed=2)
    assert figures.report.lost == [], figures.report.line()
    assert figures.report.unjustified == [], figures.report.line()
    assert figures.kills >= 2
    print(f"row 2: {figures.line()}")
    _ = time
