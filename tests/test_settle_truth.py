"""The worker's log and stats say what became of each settle, even when a reply was lost.

A settle whose reply was lost is sent again: if the first try applied, the broker answers
"applied" (the record carries that token's outcome) and the worker logs the job as done, never
"rejected, the lease had passed to another worker". Where no retry can tell, it says the outcome
is unknown; where nothing was ever delivered, it says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import anyio
import pytest

from taskit import (
    App,
    BrokerConnectionError,
    BrokerOutcomeUnknownError,
    MemoryBroker,
    Retry,
    Settings,
    WorkerStats,
)
from taskit.broker.redis.scripts import SCRIPTS
from taskit.job import Outcome
from tests._proxy import LossyProxy, lossy_proxy
from tests.broker._redis_kinds import OwnRedisServer

pytestmark = pytest.mark.anyio

WAIT = 10.0
REJECTED = "the lease had passed to another worker"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def proxy() -> Iterator[LossyProxy]:
    server = OwnRedisServer()
    server.start()
    try:
        with lossy_proxy(server.port) as made:
            yield made
    finally:
        server.stop()


async def test_a_settle_whose_reply_was_lost_is_logged_as_applied(
    proxy: LossyProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # The worker talks to Redis through the proxy; the producer straight.
    app = App(proxy.url, settings=Settings(broker_timeout=2.0))
    producer = App(f"redis://127.0.0.1:{proxy.upstream}/0")
    for each in (app, producer):

        @each.task(name="add")
        async def add(a: int, b: int) -> int:
            return a + b

    caplog.set_level(logging.INFO, logger="taskit")
    try:
        async with app.worker() as worker:
            warm = await producer.enqueue("add", 0, 0)  # loads the script: the cut hits a settle
            await producer.result(warm.id, timeout=WAIT)
            proxy.cut(SCRIPTS["settle"].sha.encode())
            job = await producer.enqueue("add", 1, 2)
            assert (await producer.result(job.id, timeout=WAIT)).value == 3
            with anyio.fail_after(WAIT):
                await logged(f"job {job.id}")
    finally:
        await app.close()
        await producer.close()

    assert proxy.cuts == 1
    assert REJECTED not in caplog.text
    assert f"job {job.id} (add) complete in" in caplog.text
    assert worker.stats == WorkerStats(completed=2)


async def logged(text: str) -> None:
    """Wait until the worker logs a line starting with ``text`` that is not a job's start: the
    line of its settle."""
    seen = anyio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith(text) and not message.endswith("started"):
                seen.set()  # the worker logs on the test's own event loop thread

    watch = Watch()
    logger = logging.getLogger("taskit.worker")
    logger.addHandler(watch)
    try:
        await seen.wait()
    finally:
        logger.removeHandler(watch)


async def settle_one(app: App) -> WorkerStats:
    """Run a worker until it logs one job's outcome (a job left running ends no burst)."""
    async with app.worker() as worker:
        with anyio.fail_after(WAIT):
            await logged("job ")
    return worker.stats


class LosingBroker(MemoryBroker):
    """Applies the first settle, then (before the worker can retry) another worker leases the
    job again, and the reply is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.stolen = 0

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        applied = await super().settle(outcomes)
        if not self.stolen:
            self.stolen = len(await self.reserve(["default"], count=10, lease=60, timeout=0))
            raise BrokerOutcomeUnknownError("connection lost before the reply")
        return applied


async def test_an_unknown_settle_outcome_is_logged_as_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = LosingBroker()
    app = App(broker, settings=Settings(backoff=0.0))

    @app.task(name="flaky")
    async def flaky() -> None:
        raise Retry(delay=0)

    await flaky.enqueue()
    stats = await settle_one(app)

    assert broker.stolen == 1
    assert stats == WorkerStats(unknown=1)
    assert REJECTED not in caplog.text
    assert "retry outcome unknown: a try was sent but its reply was lost" in caplog.text


class DownBroker(MemoryBroker):
    """A broker whose settle never gets through."""

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        raise BrokerConnectionError("cannot be reached")


async def test_a_settle_never_delivered_is_logged_as_not_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(DownBroker(), settings=Settings(visibility_timeout=0.3))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    await noop.enqueue()
    stats = await settle_one(app)

    assert stats == WorkerStats(undelivered=1)
    assert REJECTED not in caplog.text
    assert "complete not delivered, the broker could not be reached" in caplog.text


class FrozenBroker(MemoryBroker):
    """A broker whose settle is sent and never answered (a paused Redis)."""

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover


@pytest.mark.parametrize(
    ("broker", "said", "stats"),
    [
        (DownBroker, "not delivered, the broker could not be reached", WorkerStats(undelivered=1)),
        (FrozenBroker, "outcome unknown: a try was sent", WorkerStats(unknown=1)),
    ],
    ids=["refused", "sent, no reply"],
)
async def test_a_settle_given_up_at_shutdown_says_whether_it_was_sent(
    caplog: pytest.LogCaptureFixture, broker: type[MemoryBroker], said: str, stats: WorkerStats
) -> None:
    # A stopping worker gives up a settle the broker does not take. Every such job was logged
    # "outcome unknown: the reply to the first try was lost and the retry found the lease gone",
    # even when nothing had ever been sent (Redis killed: every connection refused).
    settling = anyio.Event()

    class Watched(broker):  # type: ignore[valid-type,misc]
        async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
            settling.set()
            return await super().settle(outcomes)

    app = App(Watched(), settings=Settings(visibility_timeout=60.0, grace_period=0.1))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    await noop.enqueue()
    async with app.worker() as worker:
        with anyio.fail_after(WAIT):
            await settling.wait()  # the stop comes with its settle under way
    assert worker.stats == stats
    assert said in caplog.text
    assert "first try" not in caplog.text
