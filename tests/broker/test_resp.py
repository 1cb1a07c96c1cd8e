"""FastClient, the pipelined transport for script calls, against real redis-server processes."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
import redis
import redis.exceptions as rexc

from taskit.broker.redis.transport.fast import FastClient, supports
from tests.e2e.helpers import redis_server

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ECHO = "return {KEYS[1], ARGV[1]}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_it_serves_plain_and_unix_urls_only() -> None:
    assert supports("redis://h:1/0")
    assert supports("unix:///tmp/r.sock")
    assert not supports("rediss://h:1/0")
    with pytest.raises(ValueError, match="rediss"):
        FastClient("rediss://h:1/0")


async def test_scripts_load_and_run(redis_url: str) -> None:
    client = FastClient(redis_url)
    try:
        sha = (await client.script_load(ECHO.encode())).decode()
        assert await client.evalsha(sha, 1, "k", b"\x00v\xff") == [b"k", b"\x00v\xff"]
        with pytest.raises(rexc.NoScriptError):
            await client.evalsha("0" * 40, 0)
        with pytest.raises(rexc.ResponseError, match="boom"):
            await client.execute("EVAL", "return redis.error_reply('boom')", 0)
    finally:
        await client.aclose()


async def test_concurrent_callers_each_get_their_own_reply(redis_url: str) -> None:
    client = FastClient(redis_url)
    sha = (await client.script_load(ECHO.encode())).decode()
    replies: dict[int, object] = {}

    async def call(i: int) -> None:
        replies[i] = await client.evalsha(sha, 1, f"k{i}", str(i))

    try:
        async with anyio.create_task_group() as tg:
            for i in range(300):
                tg.start_soon(call, i)
        assert replies == {i: [f"k{i}".encode(), str(i).encode()] for i in range(300)}
    finally:
        await client.aclose()


async def test_a_cancelled_caller_does_not_shift_the_replies_of_others(redis_url: str) -> None:
    client = FastClient(redis_url)
    try:
        with anyio.move_on_after(0.05):
            await client.execute("BLPOP", "taskit-test:resp:never", 1)  # blocks the server 1 s
        # The blocked command's reply (nil, after 1 s) is still ahead in the stream; each later
        # call must get its own reply, not that one.
        assert await client.execute("ECHO", "mine") == b"mine"
        assert await client.execute("PING") == b"PONG"
    finally:
        await client.aclose()


async def test_db_password_and_client_name_come_from_the_url(tmp_path: Path) -> None:
    with redis_server(tmp_path, "--requirepass", "s3cret") as server:
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        client = FastClient(url)
        try:
            await client.execute("SET", "where", "here")
            assert await client.execute("CLIENT", "GETNAME") == b"taskit"
        finally:
            await client.aclose()
        direct = redis.Redis(port=server.port, password="s3cret", db=3)
        try:
            assert direct.get("where") == b"here"
        finally:
            direct.close()
        wrong = FastClient(f"redis://:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(rexc.AuthenticationError):
            await wrong.execute("PING")


async def test_a_lost_connection_fails_the_call_then_reconnects(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        client = FastClient(server.url)
        try:
            assert await client.execute("PING") == b"PONG"
            server.kill()
            with pytest.raises(rexc.ConnectionError):
                await client.execute("PING")
            with pytest.raises(rexc.ConnectionError, match="cannot connect"):
                await client.execute("PING")  # still down: a clear refusal, no hang
            server.start()
            assert await client.execute("PING") == b"PONG"
        finally:
            await client.aclose()


async def test_long_and_cut_blocking_waits_leave_the_broker_usable(redis_url: str) -> None:
    """A long wait is timed out by Redis (connection kept); a wait cut by cancellation drops its
    connection; either way the next wait works and wakes at once on an enqueue."""
    from datetime import UTC, datetime

    from taskit.broker.redis import RedisBroker
    from taskit.job import Job, encode_arguments

    broker = RedisBroker(redis_url, prefix=f"t-{os.urandom(4).hex()}")
    queue = "waits"

    def job() -> Job:
        payload = encode_arguments((), {})
        return Job(id=os.urandom(8).hex(), task="t", queue=queue, payload=payload,
                   created_at=datetime.now(UTC))  # fmt: skip

    try:
        start = anyio.current_time()
        assert await broker.reserve([queue], count=1, lease=30, timeout=1.2) == []
        assert 1.1 <= anyio.current_time() - start < 2.5  # Redis timed it out, ~100 ms late
        with anyio.move_on_after(0.2):
            await broker.reserve([queue], count=1, lease=30, timeout=5)  # cut: dropped
        got: list[object] = []

        async def wait() -> None:
            got.extend(await broker.reserve([queue], count=1, lease=30, timeout=5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            woke = anyio.current_time()
            await broker.enqueue([job()])
        assert len(got) == 1
        assert anyio.current_time() - woke < 0.5
    finally:
        await broker.close()
        cleanup = redis.Redis.from_url(redis_url)
        try:
            for key in cleanup.scan_iter(broker.keys.pattern()):
                cleanup.delete(key)
        finally:
            cleanup.close()
