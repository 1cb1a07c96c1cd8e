"""What a worker stores of a job's outcome, end to end on memory, real Redis and fakeredis.

A handler may return ``JobResult(success=False, error=exc)``: the exception is stored as its
message, type and traceback, readable through ``get_job``, ``result`` and the dead letters. An
outcome that cannot be stored fails that job alone; the jobs settled with it complete exactly
once. The batching settler is also tested against a broker that refuses a batch for what it holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest

from taskit import App, Job, JobResult, JobStatus, MemoryBroker, Settings, WorkerStats
from taskit._settler import Settled, Settler
from taskit.broker.base import Broker
from taskit.broker.redis import RedisBroker
from taskit.errors import BrokerConnectionError, SerializationError
from taskit.job import (
    MAX_TRACEBACK,
    Outcome,
    OutcomeKind,
    describe_error,
    encode_arguments,
    result_of,
    utc_from_timestamp,
)
from tests.broker._redis_kinds import OwnRedisServer, open_redis_harness

pytestmark = pytest.mark.anyio

WAIT = 10.0  # a hang fails the test instead of stalling the run
KINDS = ["memory", "fast-real", "redispy-fakeredis"]


# -- the stored form of a failure ---------------------------------------------------------------
class Payments:
    class Declined(Exception):
        """Nested, so its qualified name differs from its name."""


def test_describe_error_gives_message_qualified_type_and_traceback() -> None:
    try:
        raise Payments.Declined("card declined")
    except Payments.Declined as exc:
        message, error_type, trace = describe_error(exc)
    assert (message, error_type) == ("card declined", "Payments.Declined")
    assert trace.startswith("Traceback (most recent call last):")
    assert 'raise Payments.Declined("card declined")' in trace
    assert trace.endswith("Payments.Declined: card declined\n")


def test_describe_error_of_a_bare_exception_uses_its_type_name_and_cuts_long_tracebacks() -> None:
    assert describe_error(KeyError()) == ("KeyError", "KeyError", "KeyError\n")
    _, _, trace = describe_error(ValueError("x" * (2 * MAX_TRACEBACK)))
    assert len(trace) == MAX_TRACEBACK
    assert trace.endswith("xxx\n")  # the end, where the error is, is kept


def test_describe_error_escapes_what_msgpack_cannot_carry() -> None:
    message, _, trace = describe_error(FileNotFoundError("no file caf\udce9"))
    assert message == "no file caf\\udce9"
    assert "caf\\udce9" in trace


def test_a_job_result_takes_an_exception_as_its_error() -> None:
    result = JobResult(success=False, error=Payments.Declined("no funds"))
    assert (result.error, result.error_type, result.traceback) == (
        "no funds",
        "Payments.Declined",
        "tests.test_outcomes.Payments.Declined: no funds\n",
    )
    kept = JobResult(success=False, error=ValueError("x"), error_type="Declined")
    assert (kept.error, kept.error_type) == ("x", "Declined")
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(result), type=JobResult)
    assert decoded == result


def test_the_result_of_a_raised_failure_carries_the_jobs_traceback() -> None:
    job = Job(
        id="j", task="t", queue="q", payload=encode_arguments((), {}),
        created_at=utc_from_timestamp(0), status=JobStatus.DEAD_LETTER, error="boom",
        error_type="RuntimeError", traceback="Traceback ...\nRuntimeError: boom\n",
        result=JobResult(success=False, error="boom", error_type="RuntimeError"),
    )  # fmt: skip
    assert result_of(job) == JobResult(
        success=False, error="boom", error_type="RuntimeError", traceback=job.traceback
    )
    job.result = None
    assert result_of(job).traceback == job.traceback


# -- end to end, on every broker -----------------------------------------------------------------
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py runs on asyncio only; the memory kind runs here alike


@asynccontextmanager
async def app_on(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[App]:
    settings = Settings(backoff=0.0, visibility_timeout=2.0, reaper_interval=0.2)
    if kind == "memory":
        yield App(MemoryBroker(), settings=settings)
        return
    async with open_redis_harness(kind, request) as harness:
        yield App(harness.broker, settings=settings)


async def burst(app: App, concurrency: int) -> WorkerStats:
    with anyio.fail_after(WAIT):
        return await app.worker(concurrency=concurrency).run(burst=True)


def declined(message: str) -> JobResult:
    """What the reference handlers do: catch the exception, return it as the error."""
    try:
        raise ValueError(message)
    except ValueError as exc:
        return JobResult(success=False, error=exc)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_returned_exception_is_stored_with_type_message_and_traceback(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, request) as app:

        @app.task
        async def charge() -> JobResult:
            return declined("x")

        job = await charge.enqueue()
        stats = await burst(app, 1)

        stored = await app.get_job(job.id)
        assert stored is not None
        assert (stored.status, stored.attempts) == (JobStatus.FAILED, 1)
        assert (stored.error, stored.error_type) == ("x", "ValueError")
        assert stored.traceback is not None
        assert "raise ValueError(message)" in stored.traceback
        assert stored.traceback.endswith("ValueError: x\n")
        result = await app.result(job.id, timeout=WAIT)
        assert (result.success, result.error, result.error_type) == (False, "x", "ValueError")
        assert result.traceback == stored.traceback
        assert (stats.failed, stats.retried, stats.completed) == (1, 0, 0)


BAD: dict[str, Any] = {
    "exception error": declined("x"),
    "unencodable value": JobResult(success=True, value=object()),
    "error not text": JobResult(success=False, error=42),  # type: ignore[arg-type]
}


class Gate:
    """Holds its first ``n - 1`` waiters until the ``n``-th arrives, then lets all through."""

    def __init__(self, n: int) -> None:
        self._left = n
        self._open = anyio.Event()

    async def wait(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._open.set()
        await self._open.wait()


@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
@pytest.mark.parametrize("kind", KINDS)
async def test_one_bad_outcome_does_not_touch_the_jobs_settled_with_it(
    kind: str, bad: str, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, request) as app:
        together = Gate(6)  # all six end at once: their outcomes share batches

        @app.task
        async def good(n: int) -> int:
            await together.wait()
            return n

        @app.task
        async def odd() -> Any:
            await together.wait()
            return BAD[bad]

        goods = [await good.enqueue(n) for n in range(5)]
        odd_job = await odd.enqueue()
        stats = await burst(app, 6)

        assert (stats.completed, stats.failed, stats.retried, stats.lost) == (5, 1, 0, 0)
        for n, job in enumerate(goods):
            done = await app.get_job(job.id)
            assert done is not None
            assert (done.status, done.attempts) == (JobStatus.COMPLETED, 1)
            assert (await app.result(job.id)).value == n
        failed = await app.get_job(odd_job.id)  # never raises: nothing unreadable was stored
        assert failed is not None
        assert (failed.status, failed.attempts) == (JobStatus.FAILED, 1)
        assert failed.error is not None
        if bad == "exception error":
            assert (failed.error, failed.error_type) == ("x", "ValueError")
        else:
            assert failed.error_type == "SerializationError"
            assert f"result of task {odd.name!r} cannot be stored" in failed.error
        queue = app.settings.default_queue
        assert (await app.stats([queue]))[queue].running == 0


# -- the settler against a broker that refuses a batch for one member ----------------------------
class PickyBroker(MemoryBroker):
    """A broker that refuses a whole settle call when any outcome's result is the value
    ``"poison"`` (as a broker that encodes a batch in one piece would)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        self.calls.append(len(outcomes))
        if any(o.result is not None and o.result.value == "poison" for o in outcomes):
            raise SerializationError("cannot encode 'poison'")
        return await super().settle(outcomes)


async def settle_through(
    broker: Broker, outcomes: list[Outcome]
) -> dict[str, tuple[Outcome, Settled]]:
    """Submit ``outcomes`` to a Settler at once; what it reported, by job id."""
    reported: dict[str, tuple[Outcome, Settled]] = {}
    settler = Settler(broker, 5.0, lambda o, ok: reported.__setitem__(o.job_id, (o, ok)))
    for item in outcomes:
        settler.submit(item)
    settler.close()
    with anyio.fail_after(WAIT):
        await settler.run()
    return reported


async def test_after_batch_is_called_once_a_batchs_outcomes_are_reported() -> None:
    broker = MemoryBroker()
    app = App(broker)

    @app.task
    async def noop() -> None:
        """Only enqueued and reserved here, never run."""

    for _ in range(3):
        await noop.enqueue()
    leases = await broker.reserve(["default"], count=3, lease=30.0, timeout=0)
    calls: list[str] = []
    settler = Settler(
        broker, 5.0, lambda o, ok: calls.append(ok.value), lambda: calls.append("end")
    )
    for lease in leases:
        settler.submit(Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.RELEASE))
    settler.close()
    with anyio.fail_after(WAIT):
        await settler.run()
    assert calls == ["applied", "applied", "applied", "end"]


async def test_a_batch_refused_for_one_member_settles_the_others_and_fails_that_one() -> None:
    broker = PickyBroker()
    app = App(broker)

    @app.task
    async def noop(n: int) -> None:
        """Only enqueued and reserved here, never run."""

    jobs = [await noop.enqueue(n) for n in range(6)]
    leases = await broker.reserve(["default"], count=6, lease=30.0, timeout=0)
    outcomes = [
        Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE,
                result=JobResult(success=True, value="poison" if i == 3 else i))
        for i, lease in enumerate(leases)
    ]  # fmt: skip

    reported = await settle_through(broker, outcomes)

    assert broker.calls[0] == 6  # one batch first, then each member alone
    assert all(ok is Settled.APPLIED for _, ok in reported.values())
    bad = leases[3].job.id
    assert reported[bad][0].kind is OutcomeKind.FAIL
    for job in jobs:
        stored = await app.get_job(job.id)
        assert stored is not None
        assert stored.attempts == 1
        if job.id == bad:
            assert (stored.status, stored.error_type) == (JobStatus.FAILED, "SerializationError")
            assert stored.error is not None
            assert (
                "the broker refused it: SerializationError: cannot encode 'poison'" in stored.error
            )
        else:
            assert stored.status is JobStatus.COMPLETED


class FlakyBroker(MemoryBroker):
    """A broker that cannot be reached for its first settle call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        self.calls.append(len(outcomes))
        if len(self.calls) == 1:
            raise BrokerConnectionError("Redis at redis://x cannot be reached")
        return await super().settle(outcomes)


async def test_an_outage_is_retried_for_the_whole_batch_not_split() -> None:
    broker = FlakyBroker()
    app = App(broker)

    @app.task
    async def noop(n: int) -> None:
        """Only enqueued and reserved here, never run."""

    for n in range(3):
        await noop.enqueue(n)
    leases = await broker.reserve(["default"], count=3, lease=30.0, timeout=0)
    outcomes = [
        Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE,
                result=JobResult(success=True, value=i))
        for i, lease in enumerate(leases)
    ]  # fmt: skip

    reported = await settle_through(broker, outcomes)

    assert broker.calls == [3, 3]
    assert [(o.kind, ok) for o, ok in reported.values()] == [
        (OutcomeKind.COMPLETE, Settled.APPLIED)
    ] * 3


# -- handlers that raise or return the odd things user code does --------------------------------
class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class Custom(BaseException):
    """Not an Exception: a worker catching only ``Exception`` let it end the worker."""


def _loop() -> list[Any]:
    looped: list[Any] = []
    looped.append(looped)
    return looped


ODD: dict[str, tuple[Any, str]] = {  # what the handler does with it, and the stored error type
    "raises unprintable": (Unprintable("x"), "Unprintable"),
    "raises SystemExit": (SystemExit(3), "SystemExit"),
    "raises KeyboardInterrupt": (KeyboardInterrupt(), "KeyboardInterrupt"),
    "raises a BaseException": (Custom("c"), "Custom"),
    "returns unprintable": (Unprintable("x"), "Unprintable"),
    "returns itself": (None, "SerializationError"),
}


@pytest.mark.parametrize("odd", list(ODD), ids=list(ODD))
@pytest.mark.parametrize("kind", KINDS)
async def test_a_handler_raising_or_returning_anything_fails_its_job_alone(
    kind: str, odd: str, request: pytest.FixtureRequest
) -> None:
    thing, error_type = ODD[odd]
    async with app_on(kind, request) as app:

        @app.task
        async def good(n: int) -> int:
            return n

        @app.task(max_retries=0)
        def strange() -> Any:  # sync: runs in a thread, as most handlers do
            if odd.startswith("raises"):
                raise thing
            return _loop() if thing is None else JobResult(success=False, error=thing)

        goods = [await good.enqueue(n) for n in range(3)]
        job = await strange.enqueue()
        stats = await burst(app, 4)  # ends: the worker was not stopped by the handler

        assert (stats.completed, stats.lost) == (3, 0)
        for n, done in enumerate(goods):
            assert (await app.result(done.id)).value == n
        stored = await app.get_job(job.id)
        assert stored is not None
        assert stored.status in (JobStatus.FAILED, JobStatus.DEAD_LETTER)
        assert (stored.attempts, stored.error_type) == (1, error_type)
        assert stored.error
        if "unprintable" in odd:
            assert stored.error == "<Unprintable: str() raised RuntimeError>"


@pytest.mark.parametrize("kind", ["memory", "fast-real"])
async def test_hooks_and_subscribers_raising_a_base_exception_never_end_the_worker(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with app_on(kind, request) as app:

        def hook(job: Job, error: BaseException) -> None:
            raise SystemExit(1)

        @app.on("completed")
        def listener(event: Any) -> None:
            raise KeyboardInterrupt

        @app.task(max_retries=0, on_failure=hook)
        def flaky(n: int) -> int:
            if n == 0:
                raise ValueError("n is 0")
            return n

        jobs = [await flaky.enqueue(n) for n in range(3)]
        stats = await burst(app, 3)

        assert (stats.completed, stats.dead_lettered, stats.lost) == (2, 1, 0)
        stored = await app.get_job(jobs[0].id)
        assert stored is not None
        assert (stored.status, stored.error) == (JobStatus.DEAD_LETTER, "n is 0")


@pytest.mark.redis
async def test_a_result_bigger_than_redis_takes_fails_its_job_alone() -> None:
    """Redis refuses an argument over ``proto-max-bulk-len`` (512 MB by default; 1 MB here) as a
    protocol error: the batch holding it was retried as an outage for a whole lease, and every
    job in it ran again."""
    server = OwnRedisServer("--proto-max-bulk-len", "1mb")
    server.start()
    try:
        settings = Settings(visibility_timeout=2.0, reaper_interval=0.2, backoff=0.0)
        app = App(RedisBroker(server.url, prefix="big"), settings=settings)
        together = Gate(6)

        @app.task
        async def good(n: int) -> int:
            await together.wait()
            return n

        @app.task(max_retries=0)
        async def big() -> str:
            await together.wait()
            return "x" * 2_000_000

        goods = [await good.enqueue(n) for n in range(5)]
        job = await big.enqueue()
        stats = await burst(app, 6)

        assert (stats.completed, stats.failed, stats.lost, stats.unknown) == (5, 1, 0, 0)
        for n, done in enumerate(goods):
            stored = await app.get_job(done.id)
            assert stored is not None
            assert (stored.status, stored.attempts, stored.result.value) == (  # type: ignore[union-attr]
                JobStatus.COMPLETED,
                1,
                n,
            )
        failed = await app.get_job(job.id)
        assert failed is not None
        assert (failed.status, failed.attempts) == (JobStatus.FAILED, 1)
        assert "proto-max-bulk-len" in (failed.error or "")
        await app.broker.close()
    finally:
        server.stop()
