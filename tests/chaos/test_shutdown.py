"""Stopping workers: catalogue rows 3 (SIGTERM, grace longer than the jobs), 4 (SIGTERM, grace
shorter than the jobs) and 5 (SIGTERM then SIGKILL); and (issue 11 item 4) a stop is prompt,
reserves nothing after the signal and counts the grace period from it, on every event loop and
whatever state Redis is in (up, stopped, unreachable, a read-only replica)."""

from __future__ import annotations

import importlib.util
import signal
import time
from pathlib import Path

import anyio
import pytest
import redis

from taskit import App, JobStatus
from tests._ci import missing
from tests.chaos.harness import Cluster, cluster, consistency_problems, log_time, wait_until
from tests.chaos.producing import enqueue_work
from tests.e2e.helpers import WorkerProcess, free_port

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
    assert worker.wait(timeout=30) == 0
    signalled = log_time(worker.wait_for_line("stopping gracefully"))
    mine = [e for e in chaos.entries() if e.pid == worker.pid]
    reserved_after = [e for e in mine if e.kind == "R" and e.at > signalled + 0.001]
    assert reserved_after == [], "reserved after the signal"
    starts = {e.job_id for e in mine if e.kind == "S"}
    ends = {e.job_id for e in mine if e.kind == "E" and e.outcome == "ok"}
    assert starts == ends  # every job it started, it finished
    applied = {e.job_id for e in mine if e.kind == "X" and e.applied == "1"}
    assert starts <= applied
    # No started job was handed back; jobs held unstarted (TASKIT_PREFETCH > 0) are, at once.
    assert not [e for e in mine if e.kind == "X" and e.outcome == "release" and e.job_id in starts]
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
            assert worker.wait(timeout=20) == 0
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


# -- issue 11 item 4: stopping is prompt and reserves nothing, in every broker state -----------
#: A bound that a prompt stop meets with room to spare on a busy machine; the precise figures
#: come from ``benchmarks/stop_time.py``, not from here.
PROMPT = 2.0
#: Calls a stopping idle worker may make: it ends its one wait (CLIENT UNBLOCK, the reserve
#: queued behind the BLPOP) and withdraws its record; its reaper may tick meanwhile.
FEW_CALLS = {"blpop": 2, "client|unblock": 2, "evalsha": 20}


def loops() -> list[str]:
    return ["asyncio", "uvloop"]


def calls_since_reset(client: redis.Redis) -> dict[str, int]:
    """Calls of the ``FEW_CALLS`` commands since ``CONFIG RESETSTAT``."""
    stats = client.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in FEW_CALLS}


def assert_few(calls: dict[str, int]) -> None:
    """A cancelled wait that looped made thousands of each a second."""
    assert all(calls[name] <= most for name, most in FEW_CALLS.items()), calls


def wait_blocked(client: redis.Redis) -> None:
    """Until a worker sleeps in its BLPOP: the idle state a stop must cut short."""
    wait_until(
        lambda: any(c.get("cmd") == "blpop" for c in client.client_list()), 20, what="a BLPOP"
    )


def stop_and_time(chaos: Cluster, worker: WorkerProcess) -> float:
    """SIGTERM ``worker``; seconds until it exited (with status 0)."""
    signalled = chaos.kill(worker, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.log
    return time.time() - signalled


@pytest.mark.parametrize("loop", loops())
async def test_an_idle_worker_exits_at_once_on_sigterm_and_sends_few_commands(
    chaos: Cluster, loop: str
) -> None:
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        missing("uvloop is not installed (taskit[fast])")
    worker = chaos.spawn("-c", "4", "--loop", loop)
    client = chaos.client()
    try:
        wait_blocked(client)
        client.config_resetstat()  # the test's own server: only this worker talks to it
        took = stop_and_time(chaos, worker)
        calls = calls_since_reset(client)
    finally:
        client.close()
    assert took < PROMPT, took
    assert_few(calls)


async def test_a_job_enqueued_after_sigterm_is_not_reserved(chaos: Cluster, producer: App) -> None:
    worker = chaos.spawn("-c", "4")
    await enqueue_work(producer, ["a"], 1.0)
    wait_until(lambda: started(chaos, worker.pid) == 1, 20, what="the start of a")
    chaos.kill(worker, signal.SIGTERM)
    worker.wait_for_line("stopping gracefully")
    await anyio.sleep(0.2)
    await enqueue_work(producer, ["late"], 0.0)
    assert worker.wait(timeout=30) == 0
    assert not [e for e in chaos.entries() if e.job_id == "late"]  # never reserved nor run
    late = await producer.get_job("late")
    assert late is not None
    assert (late.status, late.attempts) == (JobStatus.PENDING, 0)
    assert (await producer.result("a", timeout=5)).success  # the running one finished


async def test_the_grace_period_counts_from_the_signal(tmp_path: Path) -> None:
    with cluster(tmp_path, visibility_timeout=60.0, grace_period=0.2) as chaos:
        app = App(chaos.url)
        try:
            worker = chaos.spawn("-c", "4")
            await enqueue_work(app, ["long"], 3.0)
            wait_until(lambda: started(chaos, worker.pid) == 1, 20, what="the start")
            signalled = chaos.kill(worker, signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
            mine = chaos.entries()
            released = [e for e in mine if e.kind == "X" and e.outcome == "release"]
            assert [(e.job_id, e.applied) for e in released] == [("long", "1")]
            assert not [e for e in mine if e.kind == "E" and e.outcome == "ok"]  # not finished
            assert released[0].at - signalled < 0.2 + PROMPT / 2  # 0.2 s after the signal
            job = await app.get_job("long")
            assert job is not None
            assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
        finally:
            await app.close()


async def test_a_second_signal_hands_back_at_once_and_never_re_reserves(tmp_path: Path) -> None:
    with cluster(tmp_path, visibility_timeout=60.0, grace_period=30.0) as chaos:
        app = App(chaos.url)
        try:
            worker = chaos.spawn("-c", "4")
            await enqueue_work(app, ["long"], 30.0)
            wait_until(lambda: started(chaos, worker.pid) == 1, 20, what="the start")
            chaos.kill(worker, signal.SIGTERM)
            worker.wait_for_line("stopping gracefully")
            signalled = chaos.kill(worker, signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
            assert time.time() - signalled < PROMPT
            reserved = [e for e in chaos.entries() if e.kind == "R" and e.job_id == "long"]
            assert len(reserved) == 1, reserved  # the released job was not taken again
            job = await app.get_job("long")
            assert job is not None
            assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
        finally:
            await app.close()


async def test_sigterm_stops_a_worker_whose_redis_was_stopped_under_a_running_job(
    tmp_path: Path,
) -> None:
    # A release that cannot be delivered is given up a second after the grace period (the
    # lease expires and the job is reclaimed), not retried for the whole 60 s lease.
    with cluster(tmp_path, visibility_timeout=60.0, grace_period=0.5) as chaos:
        app = App(chaos.url)
        try:
            worker = chaos.spawn("-c", "4")
            await enqueue_work(app, ["long"], 30.0)
            wait_until(lambda: started(chaos, worker.pid) == 1, 20, what="the start")
        finally:
            await app.close()
        chaos.server.kill()
        took = stop_and_time(chaos, worker)
        assert took < 0.5 + 1.0 + PROMPT, took


async def test_sigterm_stops_a_worker_of_an_unreachable_redis(tmp_path: Path) -> None:
    with cluster(tmp_path) as chaos:
        url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        worker = chaos.spawn("-c", "4", env={**chaos.env(), "TASKIT_BROKER_URL": url})
        worker.wait_for_line("reserve failed")
        assert stop_and_time(chaos, worker) < PROMPT


async def test_sigterm_stops_a_worker_of_a_read_only_replica(tmp_path: Path) -> None:
    dead_primary = str(free_port())
    with cluster(tmp_path, "--replicaof", "127.0.0.1", dead_primary) as chaos:
        worker = chaos.spawn("-c", "4")
        client = chaos.client()
        try:
            # Every script's first command is a write (see allow_oom in _common.lua), so a
            # replica refuses even an empty reserve: the worker waits in its outage backoff.
            worker.wait_for_line("reserve failed")
            assert "READONLY" in worker.log or "read only" in worker.log.lower(), worker.log
            client.config_resetstat()
            took = stop_and_time(chaos, worker)
            calls = calls_since_reset(client)
        finally:
            client.close()
        assert took < PROMPT, took
        assert_few(calls)


async def test_loop_trio_with_redis_is_refused_at_once(chaos: Cluster) -> None:
    worker = chaos.spawn("--loop", "trio", "--burst", wait=False)
    assert worker.wait(timeout=30) == 2  # a usage error, before anything runs
    assert "runs on asyncio only" in worker.log
    assert "use --loop asyncio or uvloop" in worker.log


@pytest.mark.parametrize("when", ["idle", "mid-job", "at start"])
async def test_sigterm_stops_a_worker_whose_redis_is_paused(tmp_path: Path, when: str) -> None:
    # A paused (SIGSTOP) server accepts connections and answers nothing. A reply still owed
    # gets half a second, a hand-back one second after the grace period; then the worker goes
    # (what it leased expires and is reclaimed once Redis runs again).
    with cluster(tmp_path, visibility_timeout=60.0, grace_period=0.5) as chaos:
        assert chaos.server.proc is not None
        client = chaos.client()
        try:
            if when == "at start":
                chaos.server.proc.send_signal(signal.SIGSTOP)
            worker = chaos.spawn("-c", "4")
            if when == "idle":
                wait_blocked(client)
            elif when == "mid-job":
                app = App(chaos.url)
                try:
                    await enqueue_work(app, ["long"], 30.0)
                    wait_until(lambda: started(chaos, worker.pid) == 1, 20, what="the start")
                finally:
                    await app.close()
            if when != "at start":
                chaos.server.proc.send_signal(signal.SIGSTOP)
            await anyio.sleep(0.3)  # the worker is in the middle of a call now, or between
            took = stop_and_time(chaos, worker)
        finally:
            chaos.server.proc.send_signal(signal.SIGCONT)
            client.close()
        assert took < 0.5 + 1.0 + PROMPT, took


async def test_a_second_signal_stops_at_once_even_when_redis_cannot_take_the_hand_back(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path, visibility_timeout=60.0, grace_period=30.0) as chaos:
        assert chaos.server.proc is not None
        worker = chaos.spawn("-c", "4")
        app = App(chaos.url)
        try:
            await enqueue_work(app, ["long"], 30.0)
            wait_until(lambda: started(chaos, worker.pid) == 1, 20, what="the start")
        finally:
            await app.close()
        chaos.server.proc.send_signal(signal.SIGSTOP)
        try:
            chaos.kill(worker, signal.SIGTERM)
            worker.wait_for_line("stopping gracefully")
            took = stop_and_time(chaos, worker)  # the second signal: the grace period ends
        finally:
            chaos.server.proc.send_signal(signal.SIGCONT)
        assert took < 0.5 + 1.0 + PROMPT, took  # not the 30 s grace period


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_second_signal_while_the_worker_signs_off_still_exits_cleanly(
    tmp_path: Path, second: signal.Signals
) -> None:
    # The worker's last steps (withdrawing its registry record: up to half a second on a paused
    # Redis) ran after it had stopped listening for signals: a second SIGTERM then killed it
    # (status -15) and a second Ctrl-C raised KeyboardInterrupt ("Aborted!", status 1).
    with cluster(tmp_path, visibility_timeout=60.0, grace_period=5.0) as chaos:
        assert chaos.server.proc is not None
        client = chaos.client()
        try:
            worker = chaos.spawn("-c", "2")
            wait_blocked(client)
            chaos.server.proc.send_signal(signal.SIGSTOP)
            chaos.kill(worker, signal.SIGTERM)
            worker.wait_for_line("stopping gracefully")
            for _ in range(20):  # one in each of its last steps, until it is gone
                await anyio.sleep(0.15)
                if worker.proc.poll() is not None:
                    break
                worker.proc.send_signal(second)
            assert worker.wait(timeout=30) == 0, worker.log
            assert "Traceback" not in worker.log, worker.log
            assert "Aborted" not in worker.log, worker.log
        finally:
            chaos.server.proc.send_signal(signal.SIGCONT)
            client.close()
