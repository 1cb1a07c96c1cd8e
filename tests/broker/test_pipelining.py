"""Automatic pipelining in the transports: commands issued together share one write, and each
caller still gets its own reply or error, whatever happens to the others.

``Wire`` (the fast transport's connection) is driven here through a recording transport, so
what goes out in which write is seen exactly; ``FastClient`` and ``SharedClient`` run against
real redis-server processes, and ``SharedClient`` also over a scripted connection that holds a
batch on the wire while other threads queue behind it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.exceptions as rexc

from taskit.broker.redis.errors import ReplyLost
from taskit.broker.redis.transport.fast import FastClient
from taskit.broker.redis.transport.packing import pack
from taskit.broker.redis.transport.shared import SharedClient
from taskit.broker.redis.transport.sync import BlockingClient, BlockingPool
from taskit.broker.redis.transport.wire import Wire
from tests.broker._tls import tls_redis

pytestmark = pytest.mark.anyio

PING, ECHO_A, ECHO_B = pack(("PING",)), pack(("ECHO", "a")), pack(("ECHO", "b"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """A transport that keeps what is written; ``abort`` ends the connection as asyncio does
    (``connection_lost`` at the next loop turn)."""

    def __init__(self, wire: Wire) -> None:
        self.written: list[bytes] = []
        self.closing = False
        self._wire = wire

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self._wire.connection_lost, None)


def wired() -> tuple[Wire, Recorder]:
    wire = Wire(timeout=5.0)
    recorder = Recorder(wire)
    wire.connection_made(cast(asyncio.BaseTransport, recorder))
    return wire, recorder


async def test_a_lone_command_is_written_at_once_and_those_behind_it_in_one_write() -> None:
    wire, out = wired()
    first = wire.send(PING)
    assert out.written == [PING]  # at once: no tick, no timer
    second, third = wire.send(ECHO_A), wire.send(ECHO_B)
    assert out.written == [PING]  # replies are owed: held for this loop turn
    await asyncio.sleep(0)  # one loop turn
    assert out.written == [PING, ECHO_A + ECHO_B]
    assert wire.writes == 2
    wire.data_received(b"+PONG\r\n$1\r\na\r\n-ERR b went wrong\r\n")
    assert first.result() == b"PONG"
    assert second.result() == b"a"
    error = third.result()  # an error reply is its caller's alone
    assert isinstance(error, rexc.ResponseError)
    assert "b went wrong" in str(error)
    again = wire.send(PING)  # nothing owed: written at once again
    assert out.written[-1] == PING
    wire.data_received(b"+PONG\r\n")
    assert again.result() == b"PONG"


async def test_a_cancelled_waiter_in_the_middle_of_a_batch_shifts_no_reply() -> None:
    wire, _ = wired()
    futures = [wire.send(PING), wire.send(ECHO_A), wire.send(ECHO_B), wire.send(PING)]
    await asyncio.sleep(0)
    futures[1].cancel()
    wire.data_received(b"+PONG\r\n$1\r\na\r\n")  # the cancelled one's reply is read and dropped
    wire.data_received(b"$1\r\nb\r\n+PONG\r\n")
    assert [futures[0].result(), futures[2].result(), futures[3].result()] == [
        b"PONG",
        b"b",
        b"PONG",
    ]


async def test_a_connection_lost_before_the_flush_fails_held_commands_as_never_sent() -> None:
    wire, out = wired()
    written = wire.send(PING)
    held = [wire.send(ECHO_A), wire.send(ECHO_B)]
    wire.connection_lost(ConnectionResetError("reset"))
    await asyncio.sleep(0)  # the flush finds nothing to write
    assert out.written == [PING]
    with pytest.raises(ReplyLost):
        written.result()  # written: it may have run
    for future in held:
        exc = future.exception()
        assert isinstance(exc, rexc.ConnectionError)
        assert not isinstance(exc, ReplyLost)  # never sent: safe to send again
        assert "before the command was sent" in str(exc)


async def test_a_connection_lost_after_the_flush_fails_every_command_as_maybe_run() -> None:
    wire, _ = wired()
    futures = [wire.send(PING), wire.send(ECHO_A), wire.send(ECHO_B)]
    await asyncio.sleep(0)
    wire.data_received(b"+PONG\r\n")
    wire.connection_lost(None)
    assert futures[0].result() == b"PONG"  # answered before the loss: kept
    assert all(isinstance(f.exception(), ReplyLost) for f in futures[1:])


async def test_commands_held_when_the_connection_is_closing_are_not_written() -> None:
    wire, out = wired()
    written = wire.send(PING)
    held = wire.send(ECHO_A)
    wire.close()  # aborted: connection_lost comes at the next turn
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert out.written == [PING]
    assert isinstance(written.exception(), ReplyLost)
    exc = held.exception()
    assert isinstance(exc, rexc.ConnectionError)
    assert not isinstance(exc, ReplyLost)


async def test_send_all_writes_several_commands_in_one_write() -> None:
    wire, out = wired()
    futures = wire.send_all(PING + ECHO_A, [1.0, 0.0])
    assert out.written == [PING + ECHO_A]
    wire.data_received(b"+PONG\r\n$1\r\na\r\n")
    assert [f.result() for f in futures] == [b"PONG", b"a"]


async def test_send_all_behind_owed_replies_goes_out_now_with_the_held_ones_in_front() -> None:
    # Its callers (the blocking reserve's BLPOP and command, a salvaged call) own the futures
    # and take a dropped connection as "outcome unknown": written now, such a command can never
    # fail as "not sent", which they would report as "Redis cannot be reached" in a failover
    # (found by the cluster test that kills a slot owner under load).
    wire, out = wired()
    first = wire.send(PING)
    held = wire.send(ECHO_A)
    assert out.written == [PING]
    futures = wire.send_all(ECHO_B + PING, [1.0, 0.0])
    assert out.written == [PING, ECHO_A + ECHO_B + PING]  # the held one first: replies in order
    assert wire.writes == 2
    await asyncio.sleep(0)  # the turn's flush finds nothing left
    assert wire.writes == 2
    out.abort()
    await asyncio.sleep(0)
    for future in (first, held, *futures):
        assert isinstance(future.exception(), ReplyLost)


async def test_send_all_on_a_closing_connection_fails_as_written_never_as_not_sent() -> None:
    # The window between a transport's abort and its connection_lost: a plain send held there
    # alone fails as never sent (its caller follows it to the new master); send_all's callers
    # get ReplyLost, the outcome unknown, as they did before commands were held.
    wire, out = wired()
    first = wire.send(PING)
    held = wire.send(ECHO_A)
    out.abort()  # closing now; connection_lost comes at the next loop turn
    futures = wire.send_all(ECHO_B, [0.0])
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert isinstance(first.exception(), ReplyLost)
    assert isinstance(futures[0].exception(), ReplyLost)
    exc = held.exception()
    assert isinstance(exc, ReplyLost)  # handed to the transport with send_all's, in order


@pytest.mark.redis
async def test_concurrent_callers_on_redis_each_get_their_own_reply_or_error(
    redis_url: str,
) -> None:
    client = FastClient(redis_url)

    async def call(i: int) -> object:
        if i % 7 == 3:
            return await client.execute("EVAL", f"return redis.error_reply('no {i}')", 0)
        return await client.execute("ECHO", str(i))

    try:
        got = await asyncio.gather(*(call(i) for i in range(200)), return_exceptions=True)
        for i, reply in enumerate(got):
            if i % 7 == 3:
                assert isinstance(reply, rexc.ResponseError)
                assert str(reply) == f"no {i}"
            else:
                assert reply == str(i).encode()
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_a_caller_cancelled_mid_batch_on_redis_leaves_the_others_in_step(
    redis_url: str,
) -> None:
    client = FastClient(redis_url)
    try:
        await client.execute("PING")  # connected: each call below sends without yielding
        tasks = [asyncio.ensure_future(client.execute("ECHO", str(i))) for i in range(5)]
        await asyncio.sleep(0)  # each has sent (the first at once, the others held)
        tasks[2].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[2], asyncio.CancelledError)
        assert [done[i] for i in (0, 1, 3, 4)] == [b"0", b"1", b"3", b"4"]
        assert await client.execute("ECHO", "after") == b"after"
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_a_connection_killed_mid_batch_fails_each_command_then_reconnects(
    redis_url: str,
) -> None:
    client, admin = FastClient(redis_url), redis.Redis.from_url(redis_url)
    try:
        await client.execute("PING")
        blocked = asyncio.ensure_future(client.execute("BLPOP", "taskit-test:pipe:none", 5, wait=5))
        behind = [asyncio.ensure_future(client.execute("ECHO", str(i))) for i in range(3)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the held ones written behind the BLPOP
        await asyncio.to_thread(admin.client_kill_filter, _id=str(client.client_id))
        for future in [blocked, *behind]:
            with pytest.raises(ReplyLost):
                await future
        assert await client.execute("ECHO", "again") == b"again"
    finally:
        admin.close()
        await client.aclose()


@pytest.mark.redis
async def test_commands_issued_together_over_tls_each_get_their_own_reply(tmp_path: Path) -> None:
    with tls_redis(tmp_path) as server:
        client = FastClient(server.url())
        try:
            got = await asyncio.gather(*(client.execute("ECHO", f"t{i}") for i in range(100)))
            assert got == [f"t{i}".encode() for i in range(100)]
        finally:
            await client.aclose()


# -- threads sharing one blocking connection ---------------------------------------------------


class Scripted:
    """A stand-in for the shared ``BlockingClient``: echoes each packed command back, records
    each batch's size, holds the first batch until ``gate`` is set, and fails batch number
    ``fail_at`` (counting from 0) after answering ``answered`` of its commands."""

    def __init__(self, fail_at: int = -1, answered: int = 0) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self._fail_at, self._answered = fail_at, answered

    def batch(self, packed: Sequence[bytes], answer: Callable[[int, Any], None]) -> None:
        number = len(self.sizes)
        self.sizes.append(len(packed))
        if number == 0:
            assert self.gate.wait(10)
        for i, command in enumerate(packed):
            if number == self._fail_at and i == self._answered:
                raise ReplyLost("connection lost before the reply: test")
            answer(i, command)

    def round_trip(self, packed: bytes) -> Any:
        """A batch of one (as ``BlockingClient.round_trip``)."""
        got: list[Any] = []
        self.batch([packed], lambda _index, reply: got.append(reply))
        return got[0]

    def follows(self, exc: rexc.RedisError) -> bool:
        return False

    def close(self) -> None: ...


def _wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "not reached within 10 s"
        time.sleep(0.001)


def _shared(scripted: Scripted) -> SharedClient:
    pool = BlockingPool(lambda: cast(BlockingClient, None))
    return SharedClient(cast(BlockingClient, scripted), pool)


@pytest.fixture
def run_threads() -> Iterator[Callable[[list[Callable[[], None]]], list[threading.Thread]]]:
    started: list[threading.Thread] = []

    def run(bodies: list[Callable[[], None]]) -> list[threading.Thread]:
        threads = [threading.Thread(target=body) for body in bodies]
        started.extend(threads)
        for thread in threads:
            thread.start()
        return threads

    yield run
    for thread in started:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_threads_that_call_during_a_batch_go_out_together_each_with_its_reply(
    run_threads: Callable[[list[Callable[[], None]]], list[threading.Thread]],
) -> None:
    scripted = Scripted()
    shared = _shared(scripted)
    replies: dict[int, Any] = {}

    def call(i: int) -> Callable[[], None]:
        def body() -> None:
            replies[i] = shared.execute("ECHO", str(i))

        return body

    [leader] = run_threads([call(0)])
    _wait_until(lambda: scripted.sizes == [1])  # on the wire, held by the gate
    run_threads([call(i) for i in range(1, 8)])
    _wait_until(lambda: shared.queued() == 7)
    scripted.gate.set()
    leader.join(timeout=10)
    _wait_until(lambda: len(replies) == 8)
    assert scripted.sizes == [1, 7]  # the seven queued meanwhile: one write
    assert replies == {i: pack(("ECHO", str(i))) for i in range(8)}


def test_a_connection_lost_mid_batch_fails_only_the_unanswered_commands(
    run_threads: Callable[[list[Callable[[], None]]], list[threading.Thread]],
) -> None:
    scripted = Scripted(fail_at=1, answered=3)
    shared = _shared(scripted)
    outcomes: dict[int, object] = {}

    def call(i: int) -> Callable[[], None]:
        def body() -> None:
            try:
                outcomes[i] = shared.execute("ECHO", str(i))
            except ReplyLost as exc:
                outcomes[i] = exc

        return body

    run_threads([call(0)])
    _wait_until(lambda: scripted.sizes == [1])
    run_threads([call(i) for i in range(1, 8)])
    _wait_until(lambda: shared.queued() == 7)
    scripted.gate.set()
    _wait_until(lambda: len(outcomes) == 8)
    answered = [i for i in range(8) if isinstance(outcomes[i], bytes)]
    lost = [i for i in range(8) if isinstance(outcomes[i], ReplyLost)]
    assert len(answered) == 4  # the first batch's one and the three answered before the loss
    assert len(lost) == 4
    assert shared.execute("ECHO", "next") == pack(("ECHO", "next"))  # the next batch goes


@pytest.mark.redis
def test_many_threads_on_redis_each_get_their_own_replies_and_errors(redis_url: str) -> None:
    client = BlockingClient(redis_url)
    shared = SharedClient(client, BlockingPool(lambda: BlockingClient(redis_url)))
    wrong: list[str] = []

    def produce(n: int) -> None:
        for i in range(200):
            if i % 50 == 7:
                try:
                    shared.execute("EVAL", f"return redis.error_reply('no {n}.{i}')", 0)
                    wrong.append(f"{n}.{i}: no error")
                except rexc.ResponseError as exc:
                    if str(exc) != f"no {n}.{i}":
                        wrong.append(f"{n}.{i}: {exc}")
                continue
            got = shared.execute("ECHO", f"{n}.{i}")
            if got != f"{n}.{i}".encode():
                wrong.append(f"{n}.{i}: {got!r}")

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not wrong
        assert shared.batches <= 8 * 200
    finally:
        shared.close()
