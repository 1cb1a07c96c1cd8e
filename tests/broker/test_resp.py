"""FastClient, the fast transport (every RedisBroker's), against real redis-server processes;
and how it reads a URL (``Target``). TLS is in ``test_redis_tls``."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import anyio
import pytest
import redis
import redis.exceptions as rexc

from taskit.broker.redis.transport.fast import FastClient
from taskit.broker.redis.transport.target import Target
from tests.e2e.helpers import redis_server

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ECHO = "return {KEYS[1], ARGV[1]}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_it_reads_plain_tls_and_unix_urls() -> None:
    plain = Target.of("redis://u:p%40ss@h:7/2")
    assert (plain.host, plain.port, plain.username, plain.password, plain.db) == (
        "h",
        7,
        "u",
        "p@ss",
        2,
    )
    assert plain.tls is None
    unix = Target.of("unix:///tmp/r.sock?db=3&password=pw")
    assert (unix.unix, unix.db, unix.password) == ("/tmp/r.sock", 3, "pw")
    tls = Target.of("rediss://h:1/0").tls
    assert tls is not None
    assert tls.verify_mode is ssl.CERT_REQUIRED
    assert tls.check_hostname
    with pytest.raises(ValueError, match="http"):
        FastClient("http://h:1/0")


@pytest.mark.parametrize(
    ("query", "mode", "check"),
    [
        ("ssl_cert_reqs=none", ssl.CERT_NONE, False),
        ("ssl_cert_reqs=optional", ssl.CERT_OPTIONAL, True),
        ("ssl_cert_reqs=required&ssl_check_hostname=false", ssl.CERT_REQUIRED, False),
    ],
)
def test_tls_options_are_read_as_redis_py_reads_them(
    query: str, mode: ssl.VerifyMode, check: bool
) -> None:
    tls = Target.of(f"rediss://h:1/0?{query}").tls
    assert tls is not None
    assert (tls.verify_mode, tls.check_hostname) == (mode, check)
    strict = Target.of(
        "rediss://h/0?ssl_include_verify_flags=VERIFY_X509_STRICT&ssl_min_version=771"
    )
    assert strict.tls is not None
    assert strict.tls.verify_flags & ssl.VerifyFlags.VERIFY_X509_STRICT
    assert strict.tls.minimum_version is ssl.TLSVersion.TLSv1_2


async def test_scripts_load_and_run(redis_url: str) -> None:
    client = FastClient(redis_url)
    try:
        sha = (await client.execute("SCRIPT", "LOAD", ECHO.encode())).decode()
        assert await client.execute("EVALSHA", sha, 1, "k", b"\x00v\xff") == [b"k", b"\x00v\xff"]
        with pytest.raises(rexc.NoScriptError):
            await client.execute("EVALSHA", "0" * 40, 0)
        with pytest.raises(rexc.ResponseError, match="boom"):
            await client.execute("EVAL", "return redis.error_reply('boom')", 0)
    finally:
        await client.aclose()


async def test_concurrent_callers_each_get_their_own_reply(redis_url: str) -> None:
    client = FastClient(redis_url)
    sha = (await client.execute("SCRIPT", "LOAD", ECHO.encode())).decode()
    replies: dict[int, object] = {}

    async def call(i: int) -> None:
        replies[i] = await client.execute("EVALSHA", sha, 1, f"k{i}", str(i))

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
