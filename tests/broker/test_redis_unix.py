"""RedisBroker over a unix socket, against a redis-server of the test's own."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import redis

from taskit import App, JobStatus
from tests.e2e.helpers import redis_server

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_jobs_travel_over_a_unix_socket(tmp_path: Path) -> None:
    # A short directory: unix socket paths are limited to ~107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="tk-"))
    socket_path = directory / "redis.sock"
    try:
        with redis_server(tmp_path, "--unixsocket", str(socket_path), "--unixsocketperm", "700"):
            app = App(f"unix://{socket_path}?db=2")

            @app.task(name="unix.add")
            async def add(a: int, b: int) -> int:
                return a + b

            try:
                job = await add.enqueue(20, 22)
                stats = await app.worker(concurrency=2).run(burst=True)
                assert stats.completed == 1
                assert (await app.result(job.id, timeout=5)).value == 42
                final = await app.get_job(job.id)
                assert final is not None
                assert final.status is JobStatus.COMPLETED
                # The job's record lives on the private server behind the socket.
                direct = redis.Redis(unix_socket_path=str(socket_path), db=2)
                try:
                    keys = [k.decode() for k in direct.keys("*")]
                finally:
                    direct.close()
                assert any(job.id in key for key in keys), keys
            finally:
                await app.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_sync_enqueues_travel_over_a_unix_socket_with_a_password(tmp_path: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="tk-"))
    socket_path = directory / "redis.sock"
    try:
        extra = ("--unixsocket", str(socket_path), "--unixsocketperm", "700")
        with redis_server(tmp_path, *extra, "--requirepass", "pw"):
            app = App(f"unix://:pw@{socket_path}?db=3")

            @app.task(name="unix.mul")
            def mul(a: int, b: int) -> int:
                return a * b

            try:
                job = mul.enqueue_sync(6, 7)
                assert not app.sync_thread_running  # the blocking path: no loop thread
                direct = redis.Redis(unix_socket_path=str(socket_path), db=3, password="pw")
                try:
                    assert direct.hexists("{taskit}:jobs", job.id)
                finally:
                    direct.close()
            finally:
                app.close_sync()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
