"""Concurrent plain enqueues of one Redis broker share one script call (``coalesce``), and each
caller still gets exactly its own answer or error, whatever happens to the others.

Against a real server through the fast transport. The script calls are counted by wrapping the
broker's ``_run`` and ``_run_blocking`` (every script call goes through one of them), the
combined ones by wrapping ``_together`` and ``_together_blocking``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import anyio
import pytest
import redis

from taskit.broker.redis import RedisBroker, coalesce
from taskit.broker.redis.records import split_record
from taskit.errors import BrokerOutcomeUnknownError, CorruptJobError
from taskit.job import Job, OutcomeKind
from tests.broker._helpers import make_job, outcome, running
from tests.broker._redis_kinds import REAL, RedisHarness, open_redis_harness
from tests.broker.test_poison import corrupt_record

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def rh(request: pytest.FixtureRequest) -> AsyncIterator[RedisHarness]:
    async with open_redis_harness(REAL, request) as harness:
        yield harness


class Counted:
    """The script calls of ``broker`` (by script name) and the combined ones (jobs in each)."""

    def __init__(self, broker: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.scripts: list[str] = []
        self.combined: list[int] = []
        run, run_blocking = broker._run, broker._run_blocking
        together, together_blocking = broker._together, broker._together_blocking

        async def counted_run(name: Any, keys: Any, args: Any) -> Any:
            self.scripts.append(name)
            return await run(name, keys, args)

        def counted_run_blocking(client: Any, name: Any, keys: Any, args: Any) -> Any:
            self.scripts.append(name)
            return run_blocking(client, name, keys, args)

        async def counted_together(calls: list[Any]) -> Any:
            self.combined.append(sum(call.count for call in calls))
            return await together(calls)

        def counted_together_blocking(calls: list[Any]) -> Any:
            self.combined.append(sum(call.count for call in calls))
            return together_blocking(calls)

        monkeypatch.setattr(broker, "_run", counted_run)
        monkeypatch.setattr(broker, "_run_blocking", counted_run_blocking)
        monkeypatch.setattr(broker, "_together", counted_together)
        monkeypatch.setattr(broker, "_together_blocking", counted_together_blocking)

    def enqueues(self) -> int:
        return sum(1 for name in self.scripts if name.startswith("enqueue"))


async def stored(rh: RedisHarness, jobs: list[Job]) -> list[bool]:
    """Whether each job is stored (a live record of its id, in its queue)."""
    return [
        (got := await rh.broker.get(job.id)) is not None and got.queue == job.queue for job in jobs
    ]


async def spoiled(rh: RedisHarness, queue: str) -> Job:
    """A job of ``queue`` stored, then its record made unreadable: a job of its id cannot be
    enqueued (the script answers 'unreadable' and writes nothing)."""
    [poison] = await rh.broker.enqueue([make_job(queue)])
    raw = await rh.client.hget(rh.broker.keys.jobs, poison.id)
    await rh.client.hset(rh.broker.keys.jobs, poison.id, corrupt_record(raw, "attempts", b"1.5"))
    return poison


# -- event loops -------------------------------------------------------------------------------


async def test_64_coroutines_enqueueing_at_once_share_two_script_calls(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first goes at once, on its own; the 63 that come while it is on its way go in one
    call when it is answered; each gets its own job back, and all are stored."""
    count = Counted(rh.broker, monkeypatch)
    jobs = [make_job("q", i) for i in range(64)]
    got = await asyncio.gather(*(rh.broker.enqueue([job]) for job in jobs))
    assert got == [[job] for job in jobs]
    assert count.enqueues() == 2
    assert count.combined == [63]
    assert all(await stored(rh, jobs))
    assert (await rh.broker.stats(["q"]))["q"].queued == 64


async def test_callers_of_several_jobs_and_queues_each_get_theirs_in_their_order(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = Counted(rh.broker, monkeypatch)
    batches = [[make_job(f"q{i % 3}", i, j) for j in range(i % 4 + 1)] for i in range(12)]
    got = await asyncio.gather(*(rh.broker.enqueue(batch) for batch in batches))
    assert got == batches
    assert count.combined == [sum(map(len, batches[1:]))]
    for queue in ("q0", "q1", "q2"):  # the FIFO order is the callers' order, then each one's
        ids = [job.id for batch in batches for job in batch if job.queue == queue]
        fifo = await rh.client.lrange(rh.broker.keys.fifo(queue), 0, -1)
        assert [raw.decode() for raw in fifo] == ids


async def test_a_lone_producer_sends_at_once_and_alone(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One enqueue after another: each is its own script call, issued in the caller's first
    step (no loop turn, no timer in front of it), never a combined one."""
    count = Counted(rh.broker, monkeypatch)
    for i in range(5):
        task = asyncio.ensure_future(rh.broker.enqueue([make_job("q", i)]))
        await asyncio.sleep(0)  # the task's first step (no reply can be in yet)
        assert count.enqueues() == i + 1
        await task
    assert count.combined == []


async def test_non_plain_jobs_are_never_combined(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Priority, delay, due time: each such enqueue goes as its own call (to ``enqueue``),
    while the plain ones sent beside them share one."""
    count = Counted(rh.broker, monkeypatch)
    plain = [make_job("q", i) for i in range(6)]
    ranked = [make_job("q", i, priority=5) for i in range(3)]
    delayed = [make_job("q", i) for i in range(3)]
    calls: list[Awaitable[list[Job]]] = [rh.broker.enqueue([job]) for job in plain]
    calls += [rh.broker.enqueue([job]) for job in ranked]
    calls += [rh.broker.enqueue([job], delays=[60.0]) for job in delayed]
    got = await asyncio.gather(*calls)
    assert [jobs[0].id for jobs in got] == [job.id for job in plain + ranked + delayed]
    assert count.combined == [5]
    assert count.scripts.count("enqueue") == 6
    assert all(await stored(rh, plain + ranked + delayed))


async def test_a_combined_call_is_bounded(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coalesce, "MAX_JOBS", 10)
    count = Counted(rh.broker, monkeypatch)
    jobs = [make_job("q", i) for i in range(36)]
    got = await asyncio.gather(*(rh.broker.enqueue([job]) for job in jobs))
    assert got == [[job] for job in jobs]
    assert count.combined == [10, 10, 10, 5]
    lead, big, last = make_job("q"), [make_job("q", i) for i in range(11)], make_job("q")
    # More jobs than a combined call takes: sent on their own, beside the combined call.
    got = await asyncio.gather(
        rh.broker.enqueue([lead]), rh.broker.enqueue(big), rh.broker.enqueue([last])
    )
    assert got == [[lead], big, [last]]
    assert count.combined[4:] == [1]


async def test_one_callers_unreadable_record_fails_it_alone(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The combined call's script answers 'unreadable' and writes nothing: each caller then
    sends its own jobs on its own, so only the one with the bad id gets the error."""
    poison = await spoiled(rh, "q")
    count = Counted(rh.broker, monkeypatch)
    first, before, after = make_job("q", 1), make_job("q", 2), [make_job("q", 3), make_job("q", 4)]
    bad = make_job("q", 5, job_id=poison.id)
    got = await asyncio.gather(
        rh.broker.enqueue([first]),
        rh.broker.enqueue([before]),
        rh.broker.enqueue([bad]),
        rh.broker.enqueue(after),
        return_exceptions=True,
    )
    assert [got[0], got[1], got[3]] == [[first], [before], after]
    assert isinstance(got[2], CorruptJobError)
    assert got[2].job_id == poison.id
    assert count.combined == [4]  # tried together, then each of the three alone
    assert count.enqueues() == 1 + 1 + 3
    assert await stored(rh, [first, before, *after]) == [True] * 4
    raw = await rh.client.hget(rh.broker.keys.jobs, poison.id)
    assert split_record(raw)[0].startswith(b"pending|1.5|")  # left as it was


async def test_a_dead_letter_of_the_same_id_in_another_queue_is_replaced_by_its_caller_alone(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The combined call's script answers 'moved' (a dead letter of one caller's id waits in
    another queue) and writes nothing: each caller goes alone, and that one's own call takes
    the round that finds the dead letter and replaces it."""
    old = await running(rh.broker, "other")
    assert await rh.broker.settle([outcome(old, OutcomeKind.DEAD_LETTER)]) == [True]
    count = Counted(rh.broker, monkeypatch)
    jobs = [make_job("q", i) for i in range(4)]
    jobs[2] = make_job("q", 2, job_id=old.job.id)
    got = await asyncio.gather(*(rh.broker.enqueue([job]) for job in jobs))
    assert got == [[job] for job in jobs]
    assert count.combined == [3]
    assert count.enqueues() == 1 + 1 + 3 + 1  # the first, the combined, each alone, one round
    assert all(await stored(rh, jobs))
    assert await rh.client.zscore(rh.broker.keys.dead("other"), old.job.id) is None


async def test_a_connection_lost_under_a_combined_call_fails_each_waiter(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """Its reply lost, the call may have run: each of its callers gets its own
    ``BrokerOutcomeUnknownError``, none waits on, and the next enqueue connects anew."""
    broker = rh.broker
    await broker.enqueue([make_job("q")])  # the command connection made
    commands: Any = broker._conn.pair().commands
    together = broker._together
    admin = redis.Redis.from_url(redis_url)

    async def lost(calls: list[Any]) -> Any:
        # A BLPOP in front holds the combined call's reply back until the connection is killed.
        blocked = asyncio.ensure_future(commands.execute("BLPOP", "taskit-test:none", 5, wait=5))
        sent = asyncio.ensure_future(together(calls))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the combined call written behind the BLPOP
        await asyncio.to_thread(admin.client_kill_filter, _id=str(commands.client_id))
        with pytest.raises(Exception):  # noqa: B017, PT011 - the BLPOP's own loss
            await blocked
        return await sent

    monkeypatch.setattr(broker, "_together", lost)
    jobs = [make_job("q", i) for i in range(6)]
    try:
        with anyio.fail_after(10):
            got = await asyncio.gather(
                *(broker.enqueue([job]) for job in jobs), return_exceptions=True
            )
    finally:
        admin.close()
    assert got[0] == [jobs[0]]  # the first went alone, before
    errors = got[1:]
    assert all(isinstance(e, BrokerOutcomeUnknownError) for e in errors), errors
    assert len({id(e) for e in errors}) == len(errors)  # each caller its own
    again = make_job("q")
    assert await broker.enqueue([again]) == [again]


async def test_a_cancelled_waiter_leaves_the_others_answers_whole(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One waiter cancelled before the combined call goes (its jobs are not sent), one while
    it is on its way (its jobs are stored: they went out); the others get their own."""
    count = Counted(rh.broker, monkeypatch)
    together = rh.broker._together
    on_its_way = asyncio.Event()

    async def announced(calls: list[Any]) -> Any:
        on_its_way.set()
        return await together(calls)

    monkeypatch.setattr(rh.broker, "_together", announced)
    jobs = [make_job("q", i) for i in range(6)]
    scopes = [anyio.CancelScope() for _ in jobs]
    got: dict[int, list[Job]] = {}

    async def enqueue(i: int) -> None:
        with scopes[i]:
            got[i] = await rh.broker.enqueue([jobs[i]])

    async def cancel_when_sent() -> None:
        await on_its_way.wait()
        scopes[4].cancel()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(len(jobs)):
                tg.start_soon(enqueue, i)
            tg.start_soon(cancel_when_sent)
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # every enqueue issued: the first on its way, others waiting
            scopes[2].cancel()
    assert got == {i: [jobs[i]] for i in (0, 1, 3, 5)}
    assert count.combined == [4]  # 1, 3, 4 and 5 (2 was cancelled before it went)
    assert await stored(rh, jobs) == [True, True, False, True, True, True]


# -- threads -----------------------------------------------------------------------------------


def eight_threads(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch, jobs: list[Job]
) -> tuple[Counted, list[list[Job] | BaseException]]:
    """``jobs[i]`` enqueued by ``enqueue_blocking`` from thread i, all at once: the first
    call is held on its way until every other thread waits behind it."""
    broker = rh.broker
    count = Counted(broker, monkeypatch)
    run_blocking = broker._run_blocking
    first = threading.Event()

    def held(client: Any, name: Any, keys: Any, args: Any) -> Any:
        if not first.is_set():
            first.set()
            for _ in range(2000):  # until the others wait (at most 2 s)
                if broker._coalesced.waiting() == len(jobs) - 1:
                    break
                threading.Event().wait(0.001)
        return run_blocking(client, name, keys, args)

    monkeypatch.setattr(broker, "_run_blocking", held)
    got: list[list[Job] | BaseException] = [[] for _ in jobs]

    def enqueue(i: int) -> None:
        if i:
            first.wait()
        try:
            got[i] = broker.enqueue_blocking([jobs[i]]) or []
        except BaseException as exc:  # handed to the test
            got[i] = exc

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    return count, got


async def test_8_threads_share_two_script_calls(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [make_job("q", i) for i in range(8)]
    count, got = await asyncio.to_thread(eight_threads, rh, monkeypatch, jobs)
    assert got == [[job] for job in jobs]
    assert count.enqueues() == 2
    assert count.combined == [7]
    assert all(await stored(rh, jobs))


async def test_a_lone_thread_sends_alone(rh: RedisHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    count = Counted(rh.broker, monkeypatch)
    jobs = [make_job("q", i) for i in range(3)]
    for job in jobs:
        assert await asyncio.to_thread(rh.broker.enqueue_blocking, [job]) == [job]
    assert count.enqueues() == 3
    assert count.combined == []


async def test_one_threads_unreadable_record_fails_it_alone(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = await spoiled(rh, "q")
    jobs = [make_job("q", i) for i in range(8)]
    jobs[5] = make_job("q", 5, job_id=poison.id)
    count, got = await asyncio.to_thread(eight_threads, rh, monkeypatch, jobs)
    assert isinstance(got[5], CorruptJobError)
    assert got[5].job_id == poison.id
    assert [got[i] for i in range(8) if i != 5] == [[jobs[i]] for i in range(8) if i != 5]
    assert count.combined == [7]
    assert count.enqueues() == 1 + 1 + 7
    assert all(await stored(rh, jobs[:5] + jobs[6:]))


async def test_an_error_of_a_threads_combined_call_reaches_each_waiter(
    rh: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(calls: list[Any]) -> Any:
        raise BrokerOutcomeUnknownError("reply lost (test)")

    monkeypatch.setattr(rh.broker, "_together_blocking", lost)
    jobs = [make_job("q", i) for i in range(8)]
    _, got = await asyncio.to_thread(eight_threads, rh, monkeypatch, jobs)
    assert got[0] == [jobs[0]]
    errors = got[1:]
    assert all(isinstance(e, BrokerOutcomeUnknownError) for e in errors), errors
    assert len({id(e) for e in errors}) == 7
