"""What is the SQLite broker's own, beyond the conformance suite (which runs it as the ``sqlite``
kind): one file shared by brokers of separate connections and processes, wake-ups across
processes, flow control kept in the file, the schema version, an event loop never blocked by
SQLite, unreadable rows, and the features left for later refused plainly."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest

from taskit.broker.sqlite import SqliteBroker
from taskit.broker.sqlite.schema import VERSION
from taskit.dedup import Dedup
from taskit.errors import BrokerError, ConfigurationError, CorruptJobError
from taskit.job import JobStatus, OutcomeKind
from taskit.limits import LimitSpec
from tests.broker._helpers import LONG, make_job, new_queue, outcome

pytestmark = pytest.mark.anyio

_ROOT = str(Path(__file__).resolve().parents[2])  # where ``tests`` imports from


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
async def broker(db: Path) -> AsyncIterator[SqliteBroker]:
    made = SqliteBroker(db, result_ttl=60.0)
    yield made
    await made.close()


async def test_two_brokers_on_one_file_see_each_others_jobs(broker: SqliteBroker, db: Path) -> None:
    other = SqliteBroker(db, result_ttl=60.0)
    try:
        queue = new_queue()
        [job] = await broker.enqueue([make_job(queue, 1)])

        [held] = await other.reserve([queue], count=1, lease=LONG, timeout=0)
        assert held.job.id == job.id
        assert (await broker.get(job.id)).status is JobStatus.RUNNING  # type: ignore[union-attr]

        assert await other.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]
        assert (await broker.get(job.id)).status is JobStatus.COMPLETED  # type: ignore[union-attr]
        assert (await broker.stats([queue]))[queue].completed == 1
    finally:
        await other.close()


async def test_limits_and_dedup_windows_hold_across_brokers_on_one_file(
    broker: SqliteBroker, db: Path
) -> None:
    """Slots, lines and dedup windows live in the file: another connection (another
    process) sees and obeys them, and they survive a broker's close."""
    other = SqliteBroker(db, result_ttl=60.0)
    queue = new_queue()
    try:
        await broker.set_limits({"ex": LimitSpec(concurrency=1)})
        first, second = (msgspec.structs.replace(make_job(queue), limits=("ex:k",)) for _ in "ab")
        await broker.enqueue([first, second])
        [held] = await broker.reserve([queue], count=2, lease=LONG, timeout=0)
        await broker.close()  # reopened at the next call

        assert await other.reserve([queue], count=2, lease=LONG, timeout=0) == []
        usage = await other.limit_usage("ex")
        assert (usage.running, usage.waiting) == ({"ex:k": 1}, {"ex:k": 1})
        assert await broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]
        [next_one] = await other.reserve([queue], count=2, lease=LONG, timeout=0)
        assert next_one.job.id == second.id

        throttled = msgspec.structs.replace(make_job(queue), dedup=Dedup("throttle", "k", 30.0))
        [kept] = await broker.enqueue([throttled])
        [again] = await other.enqueue([msgspec.structs.replace(throttled, id="another")])
        assert (again.duplicate, again.id) == (True, kept.id)
    finally:
        await other.close()


async def test_a_waiting_reserve_wakes_when_another_broker_enqueues(
    broker: SqliteBroker, db: Path
) -> None:
    other = SqliteBroker(db, result_ttl=60.0)
    queue = new_queue()
    woke: list[float] = []

    async def wait() -> None:
        [held] = await broker.reserve([queue], count=1, lease=LONG, timeout=5.0)
        woke.append(time.monotonic())
        assert held.job.queue == queue

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.2)  # the reserve is waiting by now
            sent = time.monotonic()
            await other.enqueue([make_job(queue)])
        assert woke[0] - sent < 0.5  # well under the fallback poll: the wake-up came
    finally:
        await other.close()


_CHILD = """
import sys, time
from taskit.broker.sqlite import SqliteBroker
from tests.broker._helpers import make_job
broker = SqliteBroker(sys.argv[1])
for i in range(3):
    time.sleep(0.3)
    sent = time.time()
    broker.enqueue_blocking([make_job(sys.argv[2], i)])
    print(sent, flush=True)
"""


async def test_an_enqueue_in_another_process_wakes_a_waiting_reserve_at_once(
    broker: SqliteBroker, db: Path
) -> None:
    """A real second process enqueues three jobs, 0.3 s apart; each wakes the reserve waiting
    here within about 50 ms (the fallback poll alone would take up to a second)."""
    queue = new_queue()
    await broker.stats([queue])  # the file exists before the child opens it
    woke: list[float] = []

    async def consume() -> None:
        while len(woke) < 3:
            if await broker.reserve([queue], count=1, lease=LONG, timeout=10.0):
                woke.append(time.time())

    async with await anyio.open_process(
        [sys.executable, "-c", _CHILD, str(db), queue], cwd=_ROOT
    ) as child:
        with anyio.fail_after(20):
            await consume()
            await child.wait()
        assert child.stdout is not None
        sent = [float(line) for line in (await child.stdout.receive()).decode().split()]
    assert child.returncode == 0
    latencies = [w - s for w, s in zip(woke, sent, strict=True)]
    assert min(latencies) < 0.05, latencies
    assert max(latencies) < 0.5, latencies


async def test_a_database_of_a_newer_schema_is_refused(db: Path) -> None:
    first = SqliteBroker(db)
    await first.stats()
    await first.close()
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (VERSION + 1,))
    raw.close()

    newer = SqliteBroker(db)
    with pytest.raises(ConfigurationError, match=f"schema version {VERSION + 1}, newer"):
        await newer.stats()
    await newer.close()
    with sqlite3.connect(db) as raw:
        [(found,)] = raw.execute("SELECT value FROM meta WHERE key = 'schema_version'")
    raw.close()
    assert found == VERSION + 1  # left untouched


async def test_a_call_waiting_for_the_write_lock_does_not_block_the_event_loop(
    broker: SqliteBroker, db: Path
) -> None:
    queue = new_queue()
    await broker.enqueue([make_job(queue)])
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
    ticks = 0
    taken: list[int] = []

    async def reserve() -> None:
        taken.append(len(await broker.reserve([queue], count=1, lease=LONG, timeout=0)))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reserve)
            for _ in range(20):  # the loop runs on while the reserve waits for the lock
                await anyio.sleep(0.01)
                ticks += 1
            assert taken == []
            holder.execute("COMMIT")
    finally:
        holder.close()
    assert (ticks, taken) == (20, [1])


async def test_an_unreadable_spec_reads_as_a_stand_in_and_is_dead_lettered_at_reserve(
    broker: SqliteBroker, db: Path
) -> None:
    queue = new_queue()
    [bad, good] = await broker.enqueue([make_job(queue), make_job(queue)])
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE jobs SET spec = x'c1' WHERE id = ?", (bad.id,))
    raw.close()

    shown = await broker.get(bad.id)
    assert shown is not None
    assert (shown.task, shown.error_type) == ("", "SerializationError")

    leases = await broker.reserve([queue], count=10, lease=LONG, timeout=0)
    assert [held.job.id for held in leases] == [good.id]
    [letter] = await broker.dead_letters(queue)
    assert (letter.id, letter.status, letter.error_type) == (
        bad.id,
        JobStatus.DEAD_LETTER,
        "CorruptJobError",
    )
    assert await broker.requeue_dead(queue) == 0  # unreadable: it stays, to be purged
    assert await broker.purge_dead(queue) == 1


async def test_an_unreadable_status_is_a_corrupt_job_error(broker: SqliteBroker, db: Path) -> None:
    [job] = await broker.enqueue([make_job(new_queue())])
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE jobs SET status = 'lost' WHERE id = ?", (job.id,))
    raw.close()

    with pytest.raises(CorruptJobError, match="status holds 'lost'"):
        await broker.get(job.id)
    with pytest.raises(CorruptJobError):
        await broker.cancel(job.id)


def test_enqueue_blocking_stores_in_the_calling_thread(db: Path) -> None:
    broker = SqliteBroker(db)
    queue = new_queue()
    try:
        [stored] = broker.enqueue_blocking([make_job(queue)], delays=[0.0]) or []
        [again] = broker.enqueue_blocking([make_job(queue, job_id=stored.id)]) or []
    finally:
        anyio.run(broker.close)
    assert stored.status is JobStatus.PENDING
    assert again.duplicate


@pytest.mark.parametrize(
    ("field", "value", "feature"),
    [
        ("workflow", "w1", "workflows"),
    ],
)
async def test_a_job_using_a_feature_not_built_yet_is_refused_whole(
    broker: SqliteBroker, field: str, value: object, feature: str
) -> None:
    queue = new_queue()
    plain, odd = make_job(queue), make_job(queue)
    setattr(odd, field, value)

    with pytest.raises(NotImplementedError, match=rf"SqliteBroker: {feature}.* \(issue 18\)"):
        await broker.enqueue([plain, odd])

    assert await broker.get(plain.id) is None


async def test_the_methods_not_built_yet_say_so(broker: SqliteBroker) -> None:
    with pytest.raises(NotImplementedError, match="SqliteBroker: workflows"):
        await broker.workflow("w")
    with pytest.raises(NotImplementedError, match=r"SqliteBroker: browsing \(promote\)"):
        await broker.promote("x")


async def test_a_file_that_is_not_a_database_is_a_broker_error(db: Path) -> None:
    await anyio.Path(db).write_bytes(b"not a database, just text " * 100)
    broker = SqliteBroker(db)
    with pytest.raises(BrokerError, match="file is not a database"):
        await broker.stats()
    await broker.close()
