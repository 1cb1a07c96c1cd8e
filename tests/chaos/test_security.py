"""Catalogue row 19: auth, TLS and size. Bad credentials fail fast with a clear error and never
show the password; a TLS port works through ``rediss://``; a payload over the limit is refused
at enqueue and nothing is stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskit import (
    App,
    BrokerAuthenticationError,
    PayloadTooLargeError,
    SerializationError,
    Settings,
)
from taskit.broker.redis import RedisBroker
from tests.broker._redis_kinds import OwnRedisServer
from tests.broker._tls import tls_redis
from tests.chaos.harness import wait_until
from tests.e2e.helpers import WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SECRET = "s3cret-Pa55word"


@pytest.fixture
def locked() -> Iterator[OwnRedisServer]:
    """A private redis-server with a password for the default user and an ACL user ``jobs``
    allowed only on taskit keys."""
    server = OwnRedisServer(
        "--requirepass", SECRET,
        "--user", "jobs", "on", f">{SECRET}", "~{taskit}*", "+@all", "-@dangerous",
    )  # fmt: skip
    try:
        server.start()
        yield server
    finally:
        server.stop()


def url(server: OwnRedisServer, userinfo: str) -> str:
    return f"redis://{userinfo}@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize(
    "userinfo",
    [f":wrong-{SECRET}", f"jobs:wrong-{SECRET}", f"nobody:{SECRET}", ""],
    ids=["bad-password", "acl-bad-password", "acl-unknown-user", "no-password"],
)
async def test_bad_credentials_fail_fast_with_a_clear_error(
    locked: OwnRedisServer, userinfo: str
) -> None:
    target = url(locked, userinfo) if userinfo else f"redis://127.0.0.1:{locked.port}/0"
    broker = RedisBroker(target)
    began = time.monotonic()
    try:
        with pytest.raises(BrokerAuthenticationError) as info:
            await broker.stats(["default"])
    finally:
        await broker.close()
    assert time.monotonic() - began < 5.0
    assert "refused the credentials" in str(info.value)
    assert SECRET not in str(info.value)


async def test_good_credentials_work_for_the_default_user_and_an_acl_user(
    locked: OwnRedisServer,
) -> None:
    for userinfo in (f":{SECRET}", f"jobs:{SECRET}"):
        app = App(url(locked, userinfo))
        try:
            job = await app.remote("t").enqueue(1)
            assert (await app.get_job(job.id)) is not None
        finally:
            await app.close()


def test_worker_with_bad_credentials_exits_at_once_without_the_password(
    locked: OwnRedisServer,
) -> None:
    env = {"TASKIT_BROKER_URL": url(locked, f"jobs:wrong-{SECRET}")}
    worker = WorkerProcess("tests.apps.chaos_app:app", env)
    try:
        code = worker.wait(timeout=30)
        wait_until(lambda: worker.log_complete, 5, what="the log to close")
    finally:
        worker.close()
    assert code == 1, worker.log
    assert "refused the credentials" in worker.log
    assert SECRET not in worker.log
    assert "Traceback" not in worker.log


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server with only a TLS port, its certificate signed by a CA made here."""
    with tls_redis(tmp_path) as server:
        yield server.port, server.ca


async def test_tls_port_through_rediss_url(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    app = App(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required")
    try:
        job = await app.remote("t").enqueue("over tls")
        got = await app.get_job(job.id)
        assert got is not None
        assert got.args == ("over tls",)
    finally:
        await app.close()
    # Without the CA the server's certificate is not trusted: refused, not silently accepted.
    untrusting = App(f"rediss://127.0.0.1:{port}/0")
    try:
        with pytest.raises(Exception, match="certificate"):
            await untrusting.remote("t").enqueue(1)
    finally:
        await untrusting.close()


async def test_payload_just_over_the_limit_is_refused_and_nothing_is_stored(
    redis_url: str,
) -> None:
    prefix_free = f"q-size-{time.monotonic_ns()}"
    app = App(redis_url, settings=Settings(broker_url=redis_url, max_payload_bytes=1000))
    try:
        task = app.remote("t", queue=prefix_free)
        fits = task.prepare("x" * 990)  # msgpack: array headers + str header + 990 bytes
        assert len(fits.payload) <= 1000
        big = "x" * (1000 - len(fits.payload) + 990 + 1)
        over = task.prepare(big)
        assert len(over.payload) == 1001
        with pytest.raises(PayloadTooLargeError) as info:
            await app.enqueue_many([fits, over])  # all or none: the small one is not stored
        assert isinstance(info.value, SerializationError)
        assert "1001 bytes" in str(info.value)
        assert "limit of 1000 bytes" in str(info.value)
        assert (info.value.size, info.value.limit) == (1001, 1000)
        assert await app.get_job(fits.id) is None
        assert await app.get_job(over.id) is None
        stats = await app.stats([prefix_free])
        assert stats[prefix_free].queued == 0
        stored = await app.enqueue_many([fits])
        assert stored[0].id == fits.id
        await app.broker.purge(prefix_free)
    finally:
        await app.close()


async def test_payload_limit_applies_to_the_memory_broker_and_comes_from_the_environment() -> None:
    settings = Settings.from_env({"TASKIT_MAX_PAYLOAD_BYTES": "64"})
    assert settings.max_payload_bytes == 64
    assert Settings().max_payload_bytes == 1_048_576
    app = App("memory://", settings=settings)
    with pytest.raises(PayloadTooLargeError):
        await app.remote("t").enqueue("y" * 100)
    assert (await app.stats()) == {}
    await app.remote("t").enqueue("small")
    with pytest.raises(Exception, match="TASKIT_MAX_PAYLOAD_BYTES"):
        Settings.from_env({"TASKIT_MAX_PAYLOAD_BYTES": "0"})
