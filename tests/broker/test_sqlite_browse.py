"""The SQLite broker's browsing, beyond the conformance suite (whose walk of every listing runs
on SQLite too): each page an index seek (the query plans), the per-minute counts on a clock
moved by hand (exact run-time buckets, a reclaimed run timed from its reclaim, minutes kept
``COUNTS_KEPT``), and a file of schema version 1 given the browsing tables."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from taskit.broker.browse import COUNTS_KEPT, RUN_TIME_BOUNDS, Listing
from taskit.broker.sqlite import SqliteBroker, browse
from taskit.broker.sqlite.schema import VERSION, ensure
from taskit.broker.sqlite.store import Tx
from taskit.clock import FakeClock
from taskit.job import OutcomeKind
from tests.broker._browse import name_id, name_of, named, take_each
from tests.broker._helpers import LONG, make_job, new_queue, outcome

pytestmark = pytest.mark.anyio

START = 1_699_999_980.0  # a minute's start


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def broker(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteBroker]:
    made = SqliteBroker(tmp_path / "jobs.sqlite3", clock=clock, result_ttl=60.0)
    yield made
    await made.close()


async def seed(broker: SqliteBroker, clock: FakeClock, q: str) -> dict[Listing, list[str]]:
    """Jobs of ``q`` in every state but DEFERRED; each listing's ids in its documented order."""
    await broker.enqueue([named(broker, q, f"run{i}") for i in range(4)])
    for i in range(4):  # the first reserved has the latest deadline
        await broker.reserve([q], count=1, lease=LONG + 10 * (4 - i), timeout=0)
    kinds = {
        "done": OutcomeKind.COMPLETE,
        "failed": OutcomeKind.FAIL,
        "cancelled": OutcomeKind.CANCEL,
        "dead": OutcomeKind.DEAD_LETTER,
        "retry": OutcomeKind.RETRY,
    }
    ending = [named(broker, q, f"{name}{i}") for i in range(4) for name in kinds]
    await broker.enqueue(ending)
    held = await take_each(broker, q, len(ending))
    for job in ending:
        name = name_of(job.id, q)
        kind, n = kinds[name[:-1]], int(name[-1])
        delay = 1000.0 - 10 * n if kind is OutcomeKind.RETRY else 0.0
        done = outcome(held.pop(job.id), kind, error="boom", delay=delay)
        assert await broker.settle([done]) == [True]
        clock.advance(0.002)
    await broker.enqueue([named(broker, q, "cancelled4")])
    assert await broker.cancel(name_id(broker, q, "cancelled4"))
    delays = [400.0, 100.0, 300.0, 200.0]
    await broker.enqueue([named(broker, q, f"later{i}") for i in range(4)], delays=delays)
    await broker.enqueue([named(broker, q, f"ready{i}") for i in range(4)])
    await broker.enqueue([named(broker, q, "urgent", priority=5)])

    def ids(*names: str) -> list[str]:
        return [name_id(broker, q, name) for name in names]

    return {
        Listing.QUEUED: ids("urgent", "ready0", "ready1", "ready2", "ready3"),
        Listing.SCHEDULED: ids("later1", "later3", "later2", "later0"),
        Listing.RETRYING: ids("retry3", "retry2", "retry1", "retry0"),
        Listing.RUNNING: ids("run3", "run2", "run1", "run0"),
        Listing.DEFERRED: [],
        Listing.COMPLETED: ids("done3", "done2", "done1", "done0"),
        Listing.FAILED: ids("failed3", "failed2", "failed1", "failed0"),
        Listing.CANCELLED: ids(
            "cancelled4", "cancelled3", "cancelled2", "cancelled1", "cancelled0"
        ),
        Listing.DEAD: ids("dead3", "dead2", "dead1", "dead0"),
    }


class _Planned:
    """A connection that keeps the query plan of every listing query it runs."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.plans: list[str] = []

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        if "INDEXED BY" in sql:
            plan = self.conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
            self.plans.append(" / ".join(row[3] for row in plan))
        return self.conn.execute(sql, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


async def test_each_page_of_every_listing_is_an_index_seek(
    broker: SqliteBroker, clock: FakeClock, tmp_path: Path
) -> None:
    q = new_queue()
    await seed(broker, clock, q)
    await broker.close()
    conn = sqlite3.connect(tmp_path / "jobs.sqlite3", isolation_level=None)
    planned = _Planned(conn)
    tx = Tx(cast(sqlite3.Connection, planned), clock.time())
    try:
        for listing in Listing:
            page = browse.list_jobs(tx, q, listing, None, 2, None, None, 60.0)
            if page.cursor is not None:
                browse.list_jobs(tx, q, listing, page.cursor, 2, None, None, 60.0)
    finally:
        conn.close()

    assert len(planned.plans) >= len(Listing)
    for plan in planned.plans:
        assert plan.startswith("SEARCH jobs USING INDEX "), plan
        assert "TEMP B-TREE" not in plan, plan


async def test_run_times_fall_in_their_buckets(broker: SqliteBroker, clock: FakeClock) -> None:
    q = new_queue()
    await broker.enqueue([make_job(q) for _ in range(3)])
    first, second, third = await broker.reserve([q], count=3, lease=LONG * 1000, timeout=0)

    clock.advance(0.25)  # exactly a bound: in that bound's bucket
    assert await broker.settle([outcome(first, OutcomeKind.COMPLETE)]) == [True]
    clock.advance(0.5)  # 0.75 s: above 0.5, up to 1.0
    assert await broker.settle([outcome(second, OutcomeKind.FAIL, error="x")]) == [True]
    clock.advance(3600.0)  # above every bound: the last bucket
    assert await broker.settle([outcome(third, OutcomeKind.RETRY, error="x")]) == [True]

    rows = await broker.counts(clock.time() - 7200, queues=[q])
    runs = [sum(column) for column in zip(*(row.runs for row in rows), strict=True)]
    expected = [0] * (len(RUN_TIME_BOUNDS) + 1)
    for bucket in (RUN_TIME_BOUNDS.index(0.25), RUN_TIME_BOUNDS.index(1.0), -1):
        expected[bucket] += 1
    assert runs == expected
    by_minute = [(row.minute, row.completed, row.failed, row.retried) for row in rows]
    assert by_minute == [(START, 1, 1, 0), (START + 3600, 0, 0, 1)]


async def test_a_reclaimed_run_is_timed_from_its_reclaim(
    broker: SqliteBroker, clock: FakeClock
) -> None:
    q = new_queue()
    await broker.enqueue([make_job(q)])
    await broker.reserve([q], count=1, lease=5.0, timeout=0)
    clock.advance(600.0)  # its lease ran out long ago
    [again] = await broker.reclaim([q], lease=LONG)
    clock.advance(0.25)
    assert await broker.settle([outcome(again, OutcomeKind.DEAD_LETTER, error="x")]) == [True]

    [row] = [row for row in await broker.counts(0.0, queues=[q]) if row.dead]

    expected = [0] * (len(RUN_TIME_BOUNDS) + 1)
    expected[RUN_TIME_BOUNDS.index(0.25)] = 1  # not the 600 s since its first reserve
    assert list(row.runs) == expected


async def test_counts_are_by_minute_and_kept_a_day(
    broker: SqliteBroker, clock: FakeClock, tmp_path: Path
) -> None:
    q1, q2 = "a-queue", "b-queue"
    await broker.enqueue([make_job(q2)])
    clock.advance(59.0)
    await broker.enqueue([make_job(q1), make_job(q1)])
    clock.advance(1.0)  # the next minute
    await broker.enqueue([make_job(q1)])

    rows = await broker.counts(0.0)

    assert [(row.minute, row.queue, row.enqueued) for row in rows] == [
        (START, q1, 2),
        (START, q2, 1),
        (START + 60, q1, 1),
    ]
    assert await broker.counts(START + 60) == rows[2:]
    assert await broker.counts(START, START + 60, queues=[q2]) == rows[1:2]

    clock.advance(COUNTS_KEPT - 30.0)  # the first minute is now older than COUNTS_KEPT
    assert await broker.counts(0.0) == rows[2:]
    clock.advance(60.0)
    assert await broker.counts(0.0) == []
    await broker.enqueue([make_job(q1)])  # a new minute's first count: the old rows deleted
    await broker.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM minutes").fetchone() == (1,)


async def test_a_file_of_schema_version_1_is_given_the_browsing_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    ensure(conn, str(path))
    conn.execute("DROP TABLE minutes")
    conn.execute("DROP INDEX jobs_waiting")
    conn.execute("DROP INDEX jobs_ended")
    conn.execute("UPDATE meta SET value = 1 WHERE key = 'schema_version'")
    conn.execute("COMMIT")
    conn.close()
    broker = SqliteBroker(path, result_ttl=60.0)
    try:
        q = new_queue()
        await broker.enqueue([make_job(q)], delays=[100.0])

        assert [row.enqueued for row in await broker.counts(0.0, queues=[q])] == [1]
        assert len((await broker.list_jobs(q, Listing.SCHEDULED)).jobs) == 1
    finally:
        await broker.close()
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert found == (VERSION,)
