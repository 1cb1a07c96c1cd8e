"""The relay as a process: ``taskit outbox-relay`` and ``taskit worker --outbox``, on a SQLite
outbox and the real Redis (this run's database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from taskit.outbox import Outbox
from tests.apps.outbox_app import app, record

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The subprocesses' environment: this run's Redis, a fresh key prefix, a ledger dir."""
    (tmp_path / "ledger").mkdir()
    prefix = f"i13-outbox-{uuid.uuid4().hex[:8]}"
    yield {
        **os.environ,
        "TASKIT_BROKER_URL": redis_url,
        "TASKIT_REDIS_PREFIX": prefix,
        "OUTBOX_LEDGER": str(tmp_path / "ledger"),
    }
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def ran(env: dict[str, str]) -> list[str]:
    return sorted(
        line for path in Path(env["OUTBOX_LEDGER"]).glob("*.ledger")
        for line in path.read_text().splitlines()
    )  # fmt: skip


def wait_for(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return err


def write_rows(url: str, outbox: Outbox, keys: list[str]) -> None:
    engine = create_engine(url)
    outbox.create(engine)
    with Session(engine) as session, session.begin():
        for key in keys:
            outbox.enqueue(session, record, key)
    engine.dispose()


def test_a_worker_with_outbox_relays_and_runs_each_committed_job_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    keys = [f"k{i}" for i in range(20)]
    write_rows(url, Outbox(), keys)
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskit", "worker", "tests.apps.outbox_app:app",
         "--queues", "outbox", "--outbox", url],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: len(ran(env)) >= len(keys))
    finally:
        stop(worker)
    assert ran(env) == sorted(keys)


def test_outbox_relay_moves_rows_of_its_table_into_the_broker(
    env: dict[str, str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    outbox = Outbox(name="i13_outbox_cli")
    write_rows(url, outbox, ["a", "b"])
    relay = subprocess.Popen(
        [sys.executable, "-m", "taskit", "outbox-relay", "tests.apps.outbox_app:app",
         "--db", url, "--table", "i13_outbox_cli"],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    engine = create_engine(url)
    try:
        wait_for(lambda: _count(engine, outbox) == 0)
    finally:
        stop(relay)
        engine.dispose()
    # A worker in burst mode then runs them: they are in the broker.
    done = subprocess.run(
        [sys.executable, "-m", "taskit", "worker", "tests.apps.outbox_app:app",
         "--queues", "outbox", "--burst"],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ran(env) == ["a", "b"]


def _count(engine: Engine, outbox: Outbox) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox.table)).scalar_one())


def test_a_missing_outbox_extra_or_bad_url_is_one_line(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskit", "outbox-relay", "tests.apps.outbox_app:app",
         "--db", "nosuchdb://x"],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "outbox database URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_app_is_importable() -> None:
    assert app.get_task("outbox.record") is record
