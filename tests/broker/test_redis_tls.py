"""TLS (``rediss://``) on both transports, against a real TLS-only ``redis-server`` started here
(``_tls``): the broker's fast transport (``fast-tls``), its blocking twin for sync enqueues, and
the redis-py transport (``redispy-tls``) reading the same URL options the same way."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from taskit.broker.redis import RedisBroker
from taskit.broker.redis._testing import blocking_clients, transports
from taskit.broker.redis.transport.fast import FastClient
from taskit.broker.redis.transport.redispy import to_url
from taskit.errors import BrokerConnectionError
from taskit.job import JobStatus, OutcomeKind
from tests.broker._helpers import make_job, new_queue, outcome
from tests.broker._tls import TlsRedis, tls_redis

pytestmark = pytest.mark.anyio

TRANSPORTS = ["fast-tls", "redispy-tls"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    with tls_redis(tmp_path_factory.mktemp("tls")) as made:
        yield made


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """A server that demands a client certificate."""
    with tls_redis(tmp_path_factory.mktemp("mtls"), auth_clients=True) as made:
        yield made


def make_broker(url: str, transport: str) -> RedisBroker:
    return RedisBroker(url, prefix=f"tls-{new_queue()}", connect=None if transport == "fast-tls"
                       else to_url(url))  # fmt: skip


@pytest.fixture(params=TRANSPORTS)
async def broker(server: TlsRedis, request: pytest.FixtureRequest) -> AsyncIterator[RedisBroker]:
    made = make_broker(server.url(), request.param)
    yield made
    await made.close()


async def test_a_job_goes_round_over_tls(broker: RedisBroker) -> None:
    queue = new_queue()
    got: list[object] = []

    async def consume() -> None:  # blocks first: the wait and the reserve behind it, over TLS
        got.extend(await broker.reserve([queue], count=1, lease=30, timeout=5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        [job] = await broker.enqueue([make_job(queue, "over tls")])
    [held] = got
    assert held.job.id == job.id  # type: ignore[attr-defined]
    assert await broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]  # type: ignore[arg-type]
    done = await broker.get(job.id)
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert await broker.claim(new_queue(), 5.0)  # a plain command over the same transport


async def test_the_broker_runs_the_fast_transport_over_tls(server: TlsRedis) -> None:
    broker = RedisBroker(server.url())
    try:
        await broker.live()
        pair = transports(broker)
        assert isinstance(pair.commands, FastClient)
        assert isinstance(pair.waits, FastClient)
    finally:
        await broker.close()


def test_sync_enqueues_run_over_tls(server: TlsRedis) -> None:
    broker = RedisBroker(server.url(), prefix=f"tls-{new_queue()}")
    try:
        stored = broker.enqueue_blocking([make_job(new_queue())])
        assert stored is not None
        assert stored[0].status is JobStatus.PENDING
    finally:
        anyio.run(broker.close)


def _connections_made(server: TlsRedis) -> int:
    import redis

    with redis.Redis(host="127.0.0.1", port=server.port, ssl=True,
                     ssl_ca_certs=str(server.ca)) as client:  # fmt: skip
        return int(client.info("stats")["total_connections_received"])


def test_sync_enqueues_from_a_thread_each_share_one_tls_handshake(server: TlsRedis) -> None:
    """As a web server that starts a thread per request: the TLS connection is pooled, so the
    handshake (~1 ms of CPU on each side) is paid once, not per request."""
    import threading

    broker = RedisBroker(server.url(), prefix=f"tls-{new_queue()}")
    queue = new_queue()
    try:
        broker.enqueue_blocking([make_job(queue)])
        before = _connections_made(server)
        for _ in range(20):
            thread = threading.Thread(target=broker.enqueue_blocking, args=([make_job(queue)],))
            thread.start()
            thread.join(timeout=10)
        assert _connections_made(server) - before == 1  # the counting client's own
        assert len(blocking_clients(broker)) == 1
    finally:
        anyio.run(broker.close)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_untrusted_certificate_is_refused(server: TlsRedis, transport: str) -> None:
    url = f"rediss://127.0.0.1:{server.port}/0"  # the system CAs only: the test CA is unknown
    broker = make_broker(url, transport)
    try:
        with pytest.raises(BrokerConnectionError, match="certificate"):
            await broker.live()
    finally:
        await broker.close()
    if transport == "fast-tls":  # the blocking connection refuses it as well
        with pytest.raises(BrokerConnectionError, match="certificate"):
            RedisBroker(url).enqueue_blocking([make_job(new_queue())])


def _other_ca(directory: Path) -> Path:
    """A self-signed CA that signed nothing the server has."""
    import subprocess

    cert = directory / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", directory / "other-ca.key", "-out", cert, "-subj", "/CN=other"],
                   check=True, capture_output=True)  # fmt: skip
    return cert


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_wrong_ca_is_refused_saying_which_option_fixes_it(
    server: TlsRedis, transport: str, tmp_path: Path
) -> None:
    url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={_other_ca(tmp_path)}"
    broker = make_broker(url, transport)
    try:
        with pytest.raises(BrokerConnectionError, match="certificate verify failed") as caught:
            await broker.live()
    finally:
        await broker.close()
    assert "?ssl_ca_certs=/path/to/ca.pem" in str(caught.value)
    if transport == "fast-tls":
        with pytest.raises(BrokerConnectionError, match="must be the one that signed it"):
            RedisBroker(url).enqueue_blocking([make_job(new_queue())])


async def test_a_host_the_certificate_does_not_name_is_refused_saying_so(
    server: TlsRedis,
) -> None:
    broker = RedisBroker(f"rediss://localhost:{server.port}/0?ssl_ca_certs={server.ca}")
    try:
        with pytest.raises(BrokerConnectionError, match="does not name the URL's host"):
            await broker.live()
    finally:
        await broker.close()


@pytest.mark.parametrize("option", ["ssl_ca_data", "ssl_ca_path"])
def test_the_ca_may_come_as_pem_text_or_a_directory(
    server: TlsRedis, option: str, tmp_path: Path
) -> None:
    import shutil
    import subprocess
    from urllib.parse import quote

    if option == "ssl_ca_data":
        value = quote(server.ca.read_text(), safe="")
    else:
        shutil.copy(server.ca, tmp_path / "ca.pem")
        subprocess.run(["openssl", "rehash", tmp_path], check=True, capture_output=True)
        value = str(tmp_path)
    broker = RedisBroker(f"rediss://127.0.0.1:{server.port}/0?{option}={value}",
                         prefix=f"tls-{new_queue()}")  # fmt: skip

    async def fast_then_close() -> dict[str, bytes]:
        try:
            return await broker.live()
        finally:
            await broker.close()

    stored = broker.enqueue_blocking([make_job(new_queue())])  # the blocking client
    assert stored is not None
    assert anyio.run(fast_then_close) == {}  # the fast transport


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_ssl_cert_reqs_none_connects_without_checking(
    server: TlsRedis, transport: str
) -> None:
    broker = make_broker(f"rediss://127.0.0.1:{server.port}/0?ssl_cert_reqs=none", transport)
    try:
        assert await broker.live() == {}
    finally:
        await broker.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_client_certificate_comes_from_the_url(mutual: TlsRedis, transport: str) -> None:
    without = make_broker(mutual.url(), transport)
    try:
        with pytest.raises(BrokerConnectionError):
            await without.live()
    finally:
        await without.close()
    cert = f"ssl_certfile={mutual.client_cert}&ssl_keyfile={mutual.client_key}"
    broker = make_broker(mutual.url(cert), transport)
    try:
        await broker.announce("w", b"rec", ttl=5.0)
        assert await broker.live() == {"w": b"rec"}
    finally:
        await broker.close()


async def test_tls_options_it_cannot_use_are_a_configuration_error(tmp_path: Path) -> None:
    from taskit.errors import ConfigurationError

    broker = RedisBroker(f"rediss://127.0.0.1:1/0?ssl_ca_certs={tmp_path / 'missing.pem'}")
    with pytest.raises(ConfigurationError, match="TLS options"):
        await broker.live()
    await broker.close()


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_closing_a_tls_connection_closes_its_socket_at_once(server: TlsRedis) -> None:
    """A TLS transport's ``close`` keeps the socket open until the server answers its
    close_notify: an event loop that ended first (a test's, the sync bridge's) leaked it, seen
    as an unclosed-socket warning in a later test. ``aclose`` returns once it is closed."""
    before = _open_fds()
    client = FastClient(server.url())
    assert await client.execute("PING") == b"PONG"
    assert _open_fds() - before  # the connection's socket
    await client.aclose()
    assert _open_fds() - before == set()


async def test_closing_a_plain_connection_closes_its_socket_at_once(redis_url: str) -> None:
    """The same without TLS, where ``close`` left the socket to a later loop iteration."""
    before = _open_fds()
    client = FastClient(redis_url)
    assert await client.execute("PING") == b"PONG"
    await client.aclose()
    assert _open_fds() - before == set()


async def test_a_tls_connection_the_server_closed_is_made_again(server: TlsRedis) -> None:
    import redis

    client = FastClient(server.url())
    admin = redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=str(server.ca))
    try:
        assert await client.execute("CLIENT", "SETNAME", "doomed") == b"OK"
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        protocol = client._protocol
        assert protocol is not None
        await protocol.wait_closed(5.0)  # the loop read the server's close
        assert protocol.lost is not None
        assert await client.execute("PING") == b"PONG"  # a new connection, a new handshake
    finally:
        admin.close()
        await client.aclose()


async def test_a_server_that_never_answers_the_handshake_fails_within_the_timeout() -> None:
    import socket
    import time

    import redis.exceptions

    with socket.socket() as silent:  # accepts TCP (the backlog), never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        client = FastClient(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none", timeout=0.3)
        began = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError, match=r"no answer within 0\.3 s"):
            await client.execute("PING")
        assert time.monotonic() - began < 2.0
        await client.aclose()


def test_a_pooled_tls_connection_the_server_closed_is_made_again(server: TlsRedis) -> None:
    import redis

    broker = RedisBroker(server.url(), prefix=f"tls-{new_queue()}")
    admin = redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=str(server.ca))
    queue = new_queue()
    try:
        assert broker.enqueue_blocking([make_job(queue)])
        [client] = blocking_clients(broker)
        assert client._sock is not None
        host, port = client._sock.getsockname()[:2]
        assert admin.client_kill(f"{host}:{port}")
        [again] = broker.enqueue_blocking([make_job(queue)]) or []  # not a lost reply
        assert again.status is JobStatus.PENDING
    finally:
        admin.close()
        anyio.run(broker.close)
