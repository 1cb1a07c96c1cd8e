"""Every broker call has a bounded wait, and its error says whether the command was sent.

A frozen Redis (SIGSTOP on a server of the test's own) must not hang a producer: each call ends
within ``broker_timeout`` (plus a blocking wait's own length). A command whose reply is lost
raises ``BrokerOutcomeUnknownError``; one never sent (refused, or no connection made in time)
plain ``BrokerConnectionError``. The lost reply is made by ``tests._proxy.LossyProxy``: the
command runs on Redis, its reply never comes back.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import anyio
import pytest

from taskit import App, BrokerConnectionError, BrokerOutcomeUnknownError, JobStatus, Settings
from taskit.broker.redis import RedisBroker
from taskit.broker.redis import watch as _watch
from taskit.broker.redis.errors import ReplyLost
from taskit.broker.redis.transport.fast import FastClient
from tests._proxy import LossyProxy, lossy_proxy
from tests.broker._redis_kinds import OwnRedisServer, free_port

pytestmark = pytest.mark.anyio

BOUND = 0.5
#: How long past the bound a call may take to fail (scheduling, a connect on a busy machine).
SLACK = 1.5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[OwnRedisServer]:
    own = OwnRedisServer()
    own.start()
    try:
        yield own
    finally:
        if own.proc is not None:
            os.kill(own.proc.pid, signal.SIGCONT)  # a stopped process cannot be reaped
        own.stop()


@pytest.fixture
def proxy(server: OwnRedisServer) -> Iterator[LossyProxy]:
    with lossy_proxy(server.port) as made:
        yield made


def app_on(url: str) -> App:
    app = App(url, settings=Settings(broker_timeout=BOUND))

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    return app


def freeze(server: OwnRedisServer) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)


def thaw(server: OwnRedisServer) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGCONT)


async def test_a_frozen_redis_fails_each_call_within_the_bound(server: OwnRedisServer) -> None:
    # One App per call, each with live connections: the call's command is sent, then Redis
    # freezes, so each must end as "outcome unknown", within the bound.
    apps = [app_on(server.url) for _ in range(4)]
    try:
        jobs = [await app.enqueue("add", 1, 2) for app in apps]
        await anyio.to_thread.run_sync(lambda: apps[1].enqueue_many_sync([jobs[1]]))
        freeze(server)
        calls = {
            "async enqueue": lambda: apps[0].enqueue("add", 1, 2),
            "sync enqueue": lambda: anyio.to_thread.run_sync(
                lambda: apps[1].enqueue_many_sync([apps[1].tasks["add"].prepare(1, 2)])
            ),
            "get": lambda: apps[2].get_job(jobs[2].id),
            "result": lambda: apps[3].result(jobs[3].id, timeout=30),
        }
        for name, call in calls.items():
            began = anyio.current_time()
            with pytest.raises(BrokerOutcomeUnknownError, match="outcome is unknown"):
                await call()
            took = anyio.current_time() - began
            assert took < BOUND + SLACK, f"{name} took {took:.2f} s"
    finally:
        thaw(server)
        for app in apps:
            await app.close()


async def test_a_connection_to_a_frozen_redis_is_refused_within_the_bound(
    server: OwnRedisServer,
) -> None:
    # The kernel accepts the TCP connection; the handshake gets no answer. The command itself
    # was never sent: "cannot be reached", not "outcome unknown".
    freeze(server)
    app = app_on(server.url)
    try:
        for call in (lambda: app.enqueue("add", 1, 2), lambda: app.get_job("nope")):
            began = anyio.current_time()
            with pytest.raises(BrokerConnectionError, match="cannot be reached") as caught:
                await call()
            assert not isinstance(caught.value, BrokerOutcomeUnknownError)
            assert anyio.current_time() - began < BOUND + SLACK
        with pytest.raises(BrokerConnectionError) as caught:
            await anyio.to_thread.run_sync(
                lambda: app.enqueue_many_sync([app.tasks["add"].prepare(1, 2)])
            )
        assert not isinstance(caught.value, BrokerOutcomeUnknownError)
    finally:
        thaw(server)
        await app.close()


async def test_a_blocking_reserve_on_a_frozen_redis_ends_after_its_wait_plus_the_bound(
    server: OwnRedisServer,
) -> None:
    broker = RedisBroker(server.url, prefix="frozen", timeout=BOUND)
    try:
        assert await broker.reserve(["q"], count=1, lease=5, timeout=0) == []
        freeze(server)
        began = anyio.current_time()
        with pytest.raises(BrokerConnectionError):
            await broker.reserve(["q"], count=1, lease=5, timeout=1.5)
        assert anyio.current_time() - began < 1.5 + BOUND + SLACK
        thaw(server)
        # Redis is back: the broker reconnects on the next call.
        assert await broker.reserve(["q"], count=1, lease=5, timeout=0) == []
    finally:
        thaw(server)
        await broker.close()


async def test_a_refused_connection_is_not_an_unknown_outcome() -> None:
    app = app_on(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(BrokerConnectionError, match="cannot be reached") as caught:
            await app.enqueue("add", 1, 2)
        assert not isinstance(caught.value, BrokerOutcomeUnknownError)
        with pytest.raises(BrokerConnectionError) as caught:
            await anyio.to_thread.run_sync(
                lambda: app.enqueue_many_sync([app.tasks["add"].prepare(1, 2)])
            )
        assert not isinstance(caught.value, BrokerOutcomeUnknownError)
    finally:
        await app.close()


async def test_a_lost_enqueue_reply_is_an_unknown_outcome_and_retrying_is_safe(
    server: OwnRedisServer, proxy: LossyProxy
) -> None:
    app, direct = app_on(proxy.url), app_on(server.url)
    try:
        await app.enqueue("add", 0, 0)  # connected, script loaded: the cut hits the enqueue
        job = app.tasks["add"].prepare(1, 2)
        proxy.cut(b"EVALSHA")
        with pytest.raises(BrokerOutcomeUnknownError, match="same job id"):
            await app.enqueue_many([job])
        assert proxy.cuts == 1
        stored = await direct.get_job(job.id)
        assert stored is not None  # it ran
        assert stored.status is JobStatus.PENDING
        # The documented retry: the same job id, while unfinished, changes nothing.
        again = await app.enqueue_many([job])
        assert again[0].id == job.id
        assert (await direct.stats())["default"].queued == 2
    finally:
        await app.close()
        await direct.close()


async def test_a_lost_sync_enqueue_reply_is_an_unknown_outcome(
    server: OwnRedisServer, proxy: LossyProxy
) -> None:
    app, direct = app_on(proxy.url), app_on(server.url)
    try:
        first = app.tasks["add"].prepare(1, 2)
        await anyio.to_thread.run_sync(lambda: app.enqueue_many_sync([first]))
        job = app.tasks["add"].prepare(3, 4)
        proxy.cut(b"EVALSHA")
        with pytest.raises(BrokerOutcomeUnknownError):
            await anyio.to_thread.run_sync(lambda: app.enqueue_many_sync([job]))
        assert await direct.get_job(job.id) is not None
        await anyio.to_thread.run_sync(lambda: app.enqueue_many_sync([job]))
        assert (await direct.stats())["default"].queued == 2
    finally:
        await app.close()
        await direct.close()


async def test_a_lost_reply_on_the_command_client_is_an_unknown_outcome(
    server: OwnRedisServer, proxy: LossyProxy
) -> None:
    # cancel reads the record with HGET on redis-py's client first: its reply is lost, and
    # redis-py must neither resend it nor call it unreachable.
    app = app_on(proxy.url)
    try:
        job = await app.enqueue("add", 1, 2)
        proxy.cut(b"HGET")
        with pytest.raises(BrokerOutcomeUnknownError):
            await app.cancel(job.id)
        assert proxy.cuts == 1
    finally:
        await app.close()


async def test_a_blocking_command_may_block_its_own_length_past_the_bound(redis_url: str) -> None:
    # The watchdog allows a BLPOP its wait on top of the bound, and no more.
    client = FastClient(redis_url, timeout=0.3)
    key = f"taskit-test-{uuid.uuid4().hex}"
    try:
        began = anyio.current_time()
        assert await client.execute("BLPOP", key, "0.8", wait=0.8) is None
        assert anyio.current_time() - began >= 0.75
        with pytest.raises(ReplyLost, match="no reply"):
            await client.execute("BLPOP", key, "2")  # no wait allowed: late after 0.3 s
        assert await client.execute("PING") == b"PONG"  # a new connection
    finally:
        await client.aclose()


async def test_a_claim_whose_reply_was_lost_is_still_known_to_be_taken(
    server: OwnRedisServer, proxy: LossyProxy
) -> None:
    # A scheduler's claim (SET NX) that ran but lost its reply must answer True: answering
    # False would leave a claim nobody acts on, and the periodic run would be skipped.
    broker = RedisBroker(proxy.url, prefix="claims", timeout=BOUND)
    try:
        assert await broker.claim("warm", 60)
        proxy.cut(b"\r\nNX\r\n")
        assert await broker.claim("tick-1", 60)
        assert proxy.cuts == 1
        assert not await broker.claim("tick-1", 60)
    finally:
        await broker.close()


@pytest.mark.parametrize("warm", [False, True], ids=["new connections", "live connections"])
async def test_no_call_waits_twice_the_bound_on_a_frozen_redis(
    server: OwnRedisServer, warm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker's server checks (epoch, eviction policy) are repeated once on a connection
    # failure, for a pooled socket that died with a restarted Redis. A frozen server fails them
    # only after the whole bound: a repeat then made each call wait twice the bound.
    monkeypatch.setattr(_watch, "CHECK_INTERVAL", 0.0)  # every call checks the server
    calls = {
        "enqueue": lambda app: app.enqueue("add", 1, 2),
        "get": lambda app: app.get_job("nope"),
        "cancel": lambda app: app.cancel("nope"),
        "stats": lambda app: app.stats(),
        "requeue": lambda app: app.requeue_dead("default"),
    }
    for name, call in calls.items():
        app = App(server.url, settings=Settings(broker_timeout=BOUND))
        app.task(name="add")(_add)
        try:
            if warm:
                await app.stats()
                await app.get_job("warm")
            freeze(server)
            began = anyio.current_time()
            with pytest.raises(BrokerConnectionError):
                await call(app)
            took = anyio.current_time() - began
            assert took < BOUND * 1.6, f"{name} took {took:.2f} s (bound {BOUND} s)"
        finally:
            thaw(server)
            await app.close()


async def _add(a: int, b: int) -> int:
    return a + b
