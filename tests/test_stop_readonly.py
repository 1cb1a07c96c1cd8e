"""A `taskit worker` whose Redis turned into a replica under it (READONLY to every write: what a
worker with a fixed URL meets after a Sentinel failover) still stops on SIGTERM within its grace
period, with a settle it could never deliver given up (the lease expires, the job comes back)."""

from __future__ import annotations

import signal
import time

from tests.broker._redis_kinds import OwnRedisServer
from tests.e2e.helpers import WorkerProcess

APP = "tests.apps.stop_app:app"
GRACE = 2.0
#: What a stopping process may take past its grace period (interpreter exit, a busy machine).
PROMPT = 2.0


def test_a_worker_on_a_server_turned_replica_stops_within_its_grace_period() -> None:
    master, mine = OwnRedisServer(), OwnRedisServer()
    try:
        master.start()
        mine.start()
        env = {"TASKIT_BROKER_URL": mine.url, "TASKIT_GRACE_PERIOD": str(GRACE), "STOP_SEED": "1"}
        worker = WorkerProcess(APP, env, "--log-level", "debug")  # a job's start is at DEBUG
        try:
            worker.wait_for_line("attempt 1 started")
            _call(mine.port, "REPLICAOF", "127.0.0.1", str(master.port))
            worker.wait_for_line("READONLY")  # its settle (or reserve) is refused from now on
            worker.wait_for_line("settle failed")
            signalled = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0, worker.log
            took = time.monotonic() - signalled
        finally:
            worker.close()
    finally:
        master.stop()
        mine.stop()
    assert took < GRACE + PROMPT, worker.log
    assert "gave up settling 1 jobs" in worker.log


def _call(port: int, *args: str) -> None:
    import redis

    with redis.Redis(port=port) as client:
        client.execute_command(*args)
