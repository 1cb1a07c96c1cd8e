"""`taskit worker` and `taskit scheduler` processes (issue 11 items 4 and 5): a worker on the
memory broker stops at once on every event loop and counts its grace period from the signal;
against a Redis that cannot be reached, the scheduler and the worker's loops back off and log a
few lines, not thousands. The Redis cases of stopping are in ``tests/chaos/test_shutdown.py``."""

from __future__ import annotations

import importlib.util
import signal
import time
from collections.abc import Iterator

import pytest

from taskit.cli import _run_until_stopped, _Stopping
from tests._ci import missing
from tests.e2e.helpers import WorkerProcess, free_port

APP = "tests.apps.stop_app:app"
#: A bound a prompt stop meets with room to spare on a busy machine (the precise figures come
#: from ``benchmarks/stop_time.py``).
PROMPT = 2.0
#: How long the outage tests let a process run against an unreachable Redis.
OUTAGE = 3.0


def spawn(*args: str, **env: str) -> WorkerProcess:
    worker = WorkerProcess(APP, {"TASKIT_BROKER_URL": "memory://", **env}, *args)
    worker.wait_for_line("starting: queues=")
    return worker


def stop_and_time(worker: WorkerProcess, sig: int = signal.SIGTERM) -> float:
    """Send ``sig``; seconds until the process exited (with status 0)."""
    signalled = time.monotonic()
    worker.proc.send_signal(sig)
    assert worker.wait(timeout=30) == 0, worker.log
    return time.monotonic() - signalled


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "trio"])
def test_an_idle_memory_worker_exits_at_once(loop: str) -> None:
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        missing("uvloop is not installed (taskit[fast])")
    worker = spawn("--loop", loop)
    try:
        assert stop_and_time(worker) < PROMPT
    finally:
        worker.close()


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_the_grace_period_counts_from_the_signal(loop: str) -> None:
    # DEBUG: a job's start is logged at DEBUG (INFO has one line a job, at its end)
    worker = spawn("--loop", loop, "--log-level", "debug", STOP_SEED="3", TASKIT_GRACE_PERIOD="0.2")
    try:
        worker.wait_for_line("attempt 1 started")
        assert stop_and_time(worker) < 0.2 + PROMPT
        assert "job seeded (stop.sleep) release" in worker.log  # handed back, not finished
        assert "(stop.sleep) complete" not in worker.log
    finally:
        worker.close()


def test_a_second_signal_hands_back_at_once_and_never_re_reserves() -> None:
    worker = spawn("--log-level", "debug", STOP_SEED="30", TASKIT_GRACE_PERIOD="30")
    try:
        worker.wait_for_line("attempt 1 started")
        worker.proc.send_signal(signal.SIGTERM)
        worker.wait_for_line("stopping gracefully")
        assert stop_and_time(worker) < PROMPT
        assert worker.log.count("started [") == 1, worker.log
        assert "released=1" in worker.log
    finally:
        worker.close()


@pytest.mark.parametrize("signals", [1, 2])
def test_a_sync_handler_past_the_grace_period_does_not_hold_the_exit(signals: int) -> None:
    # A thread cannot be stopped: its job is handed back at the end of the grace period and the
    # thread abandoned. The process waited for it at exit all the same (interpreter shutdown
    # joins threads), 8 s here, and a second signal did not help.
    worker = spawn(STOP_SEED_SYNC="8", TASKIT_GRACE_PERIOD="0.2")
    try:
        worker.wait_for_line("stop.block sleeping in its thread")
        if signals == 2:
            worker.proc.send_signal(signal.SIGTERM)
            worker.wait_for_line("stopping gracefully")
        assert stop_and_time(worker) < 0.2 + PROMPT, worker.log
        assert "job seeded-sync (stop.block) release" in worker.log
        worker.wait_for_line("1 sync handler thread(s) still running")  # said, not dropped silently
    finally:
        worker.close()


@pytest.mark.parametrize("command", ["worker", "scheduler"])
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_more_signals_while_stopping_never_kill_the_process(
    command: str, second: signal.Signals
) -> None:
    # Ctrl-C pressed twice, or a supervisor's repeated SIGTERM: one that came after the stop
    # but before the exit (the teardown, tens of milliseconds) killed the process (-2, -15)
    # or raised KeyboardInterrupt ("Aborted!", status 1).
    env = {"TASKIT_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0", "OPS_PREFIX": "stop-twice"}
    proc = WorkerProcess("tests.apps.ops_app:app", env, command=command)
    try:
        proc.wait_for_line("starting")
        proc.proc.send_signal(signal.SIGTERM)
        while proc.proc.poll() is None:
            proc.proc.send_signal(second)
            time.sleep(0.005)
        assert proc.wait(timeout=30) == 0, proc.log
        assert "Aborted" not in proc.log, proc.log
        assert "Traceback" not in proc.log, proc.log
    finally:
        proc.close()


# -- item 5: outages are logged once in a while, not per try ---------------------------------
def warnings_against_unreachable_redis(command: str, *args: str) -> list[str]:
    """Run ``taskit <command> tests.apps.ops_app:app`` against a port nothing listens on for
    ``OUTAGE`` seconds (a schedule falls due every second); its WARNING lines."""
    env = {
        "TASKIT_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "OPS_PREFIX": "taskit-outage",
        "OPS_EVERY": "1",
    }
    proc = WorkerProcess("tests.apps.ops_app:app", env, *args, command=command)
    try:
        time.sleep(OUTAGE)
        assert stop_and_time(proc) < PROMPT
    finally:
        proc.close()
    return [line for line in proc.lines if " WARNING " in line]


def test_a_worker_with_a_scheduler_logs_an_outage_a_few_times() -> None:
    warnings = warnings_against_unreachable_redis("worker", "--scheduler")
    # One line per loop at the start (reserve, reaper, registry, scheduler), then one per loop
    # every LOG_EVERY seconds at most.
    assert 1 <= len(warnings) <= 6, "".join(warnings[:10])
    assert any("taskit.scheduler" in line for line in warnings)


def test_the_scheduler_logs_an_outage_a_few_times() -> None:
    warnings = warnings_against_unreachable_redis("scheduler")
    assert 1 <= len(warnings) <= 2, "".join(warnings[:10])


@pytest.fixture
def saved_stop_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.usefixtures("saved_stop_handlers")
def test_a_ctrl_c_in_the_moment_the_receiver_closes_ends_the_command_cleanly() -> None:
    # Closing the signal receiver restores Python's SIGINT handler for a moment before the
    # command ignores stop signals; a Ctrl-C then (seen in CI under load, one in many runs of
    # the test above) raised KeyboardInterrupt out of anyio.run: "Aborted!", or status -2.
    stopping = _Stopping()

    async def stopped_then_interrupted() -> None:
        stopping.done = True
        raise KeyboardInterrupt

    _run_until_stopped(stopping, stopped_then_interrupted)  # returns: the stop was under way
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


@pytest.mark.usefixtures("saved_stop_handlers")
def test_a_ctrl_c_before_the_stop_still_interrupts() -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run_until_stopped(_Stopping(), interrupted)
