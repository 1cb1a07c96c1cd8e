"""The inbox on SQLite, PostgreSQL and MariaDB: a key is marked if and only if its transaction
commits, one of two racing transactions wins it, expired keys are claimed again, and a handler
retried by a real worker does its database side effect once."""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor

import anyio
import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.orm import Session

from taskit import App, Fixed, JobStatus
from taskit.broker.memory import MemoryBroker
from taskit.clock import FakeClock
from taskit.inbox import KEY_LENGTH, Inbox


def claim_alone(engine: Engine, inbox: Inbox, key: str) -> bool:
    """``claim`` in a transaction of its own, committed."""
    with Session(engine) as session, session.begin():
        return inbox.claim(session, key)


def marked(engine: Engine, inbox: Inbox, key: str) -> bool:
    with Session(engine) as session:
        return inbox.is_marked(session, key)


def test_a_committed_claim_holds_its_key(engine: Engine, inbox: Inbox) -> None:
    with Session(engine) as session, session.begin():
        assert inbox.claim(session, "order:1")
        assert inbox.is_marked(session, "order:1")  # its own claim, not yet committed
        assert not inbox.claim(session, "order:1")  # the same transaction again
    assert marked(engine, inbox, "order:1")
    assert not claim_alone(engine, inbox, "order:1")
    assert not marked(engine, inbox, "order:2")


def test_a_rolled_back_claim_leaves_the_key_free(engine: Engine, inbox: Inbox) -> None:
    with Session(engine) as session:
        assert inbox.claim(session, "order:1")
        session.rollback()

    def failing_handler() -> None:
        with Session(engine) as session, session.begin():
            assert inbox.claim(session, "order:2")
            raise ConnectionError("the handler failed before its commit")

    with pytest.raises(ConnectionError):
        failing_handler()
    assert not marked(engine, inbox, "order:1")
    assert not marked(engine, inbox, "order:2")
    assert claim_alone(engine, inbox, "order:1")
    assert claim_alone(engine, inbox, "order:2")


def test_keys_are_compared_exactly(engine: Engine, inbox: Inbox) -> None:
    """MariaDB's text collations would make these one key: the column is binary there."""
    keys = ["Order:1", "order:1", "order:1 ", "ordér:1", "😀" * KEY_LENGTH]
    assert [claim_alone(engine, inbox, key) for key in keys] == [True] * len(keys)
    assert [claim_alone(engine, inbox, key) for key in keys] == [False] * len(keys)


def wait_until_blocked(engine: Engine, inbox: Inbox, claimer: Future[bool]) -> None:
    """Return once ``claimer`` waits for a lock on the inbox, as the server reports it (SQLite
    reports nothing: there, only that it has not returned after a while)."""
    if engine.dialect.name == "sqlite":
        time.sleep(0.2)
    else:
        query = {
            "postgresql": "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE :pattern",
        }.get(
            engine.dialect.name,
            "SELECT count(*) FROM information_schema.innodb_trx "
            "WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE :pattern",
        )
        deadline = time.monotonic() + 10
        with engine.connect() as conn:
            while not conn.execute(text(query), {"pattern": f"%{inbox.table.name}%"}).scalar():
                assert not claimer.done(), "the second claim did not wait for the first"
                assert time.monotonic() < deadline, "the second claim never waited"
                conn.rollback()  # a fresh snapshot of the server's views
                # MariaDB refreshes its innodb_trx table only when it was not read for 0.1 s.
                time.sleep(0.15)
    assert not claimer.done(), "the second claim did not wait for the first"


@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
@pytest.mark.parametrize("key_was", ["new", "expired"])
def test_of_two_racing_transactions_exactly_one_holds_the_key(
    engine: Engine, inbox: Inbox, clock: FakeClock, key_was: str, first_ends: str
) -> None:
    if key_was == "expired":
        with Session(engine) as session, session.begin():
            assert inbox.claim(session, "race", ttl=10)
        clock.advance(10)
    with ThreadPoolExecutor(1) as pool, Session(engine) as first:
        assert inbox.claim(first, "race")
        second = pool.submit(claim_alone, engine, inbox, "race")
        wait_until_blocked(engine, inbox, second)
        first.commit() if first_ends == "commit" else first.rollback()
        assert second.result(timeout=30) is (first_ends == "rollback")
    assert marked(engine, inbox, "race")
    assert not claim_alone(engine, inbox, "race")


def test_an_expired_key_is_claimed_again(engine: Engine, inbox: Inbox, clock: FakeClock) -> None:
    with Session(engine) as session, session.begin():
        assert inbox.claim(session, "short", ttl=10)
        assert inbox.claim(session, "for ever", ttl=None)
    clock.advance(9.5)
    assert marked(engine, inbox, "short")
    assert not claim_alone(engine, inbox, "short")
    clock.advance(0.5)  # expires_at is reached: expired
    assert not marked(engine, inbox, "short")
    with Session(engine) as session, session.begin():
        assert inbox.claim(session, "short", ttl=10)
        assert not inbox.claim(session, "short")  # the takeover holds it
    clock.advance(10 * 365 * 86_400)
    assert not claim_alone(engine, inbox, "for ever")


def test_a_rolled_back_takeover_leaves_the_expired_claim(
    engine: Engine, inbox: Inbox, clock: FakeClock
) -> None:
    assert claim_alone(engine, inbox, "k")  # for a day, the default
    clock.advance(86_400)
    with Session(engine) as session:
        assert inbox.claim(session, "k")
        session.rollback()
    assert not marked(engine, inbox, "k")
    assert claim_alone(engine, inbox, "k")


def test_purge_deletes_only_expired_keys(engine: Engine, inbox: Inbox, clock: FakeClock) -> None:
    with Session(engine) as session, session.begin():
        for key, ttl in (("a", 10.0), ("b", 20.0), ("c", 30.0), ("never", None)):
            inbox.claim(session, key, ttl=ttl)
    clock.advance(20)
    with Session(engine) as session, session.begin():
        assert inbox.purge(session) == 2  # a and b: b expires at exactly now
    with Session(engine) as session, session.begin():
        assert inbox.purge(session) == 0
        assert inbox.purge(session, before=clock.time() + 10**9) == 1  # c; never stays
    with engine.connect() as conn:
        left = conn.execute(select(inbox.table.c.key)).scalars().all()
    assert left == ["never"]


def test_forget_frees_a_key(engine: Engine, inbox: Inbox) -> None:
    assert claim_alone(engine, inbox, "redo")
    with Session(engine) as session, session.begin():
        assert inbox.forget(session, "redo")
        assert not inbox.forget(session, "redo")
        assert not inbox.forget(session, "never claimed")
    assert claim_alone(engine, inbox, "redo")


def test_a_core_connection_claims_too(engine: Engine, inbox: Inbox) -> None:
    with engine.begin() as conn:
        assert inbox.claim(conn, "core")
        assert inbox.is_marked(conn, "core")
    assert not claim_alone(engine, inbox, "core")


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", "non-empty string"),
        (None, "non-empty string"),
        (b"bytes", "non-empty string"),
        ("x" * (KEY_LENGTH + 1), f"at most {KEY_LENGTH} characters, got 256"),
        ("a\x00b", "NUL"),
    ],
)
def test_a_bad_key_is_refused(key: object, error: str) -> None:
    inbox, session = Inbox(), Session()  # refused before any database is needed
    for call in (inbox.claim, inbox.is_marked, inbox.forget):
        with pytest.raises(ValueError, match=error):
            call(session, key)  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [0, -1, math.inf, math.nan, True, "60"])
def test_a_bad_ttl_is_refused(ttl: object) -> None:
    with pytest.raises(ValueError, match="inbox ttl must be a finite number of seconds > 0"):
        Inbox().claim(Session(), "k", ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_retried_handler_writes_once(engine: Engine, inbox: Inbox) -> None:
    """A real worker runs a handler whose first attempt fails before its commit (the claim and
    the write roll back together) and whose second fails after it (the retry finds the key
    held); a duplicate job then skips as well: one ledger row."""
    ledger = Table(
        f"h13_ledger_{inbox.table.name[-12:]}",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", String(32), nullable=False),
    )
    ledger.create(engine)
    app = App(MemoryBroker())
    failures = ["after the commit", "before the commit"]

    @app.task(max_retries=3, backoff=Fixed(0.01))
    def credit(order: str) -> str:
        with Session(engine) as session, session.begin():
            if not inbox.claim(session, f"credit:{order}"):
                return "already credited"
            session.execute(ledger.insert().values(order_id=order))
            if failures and failures[-1] == "before the commit":
                raise ConnectionError(failures.pop())
        if failures:
            raise ConnectionError(failures.pop())
        return "credited"

    try:
        first = await credit.enqueue("A-17")
        with anyio.fail_after(20):
            await app.worker(concurrency=1).run(burst=True)
        duplicate = await credit.enqueue("A-17")
        with anyio.fail_after(20):
            await app.worker(concurrency=1).run(burst=True)
        summary = []
        for job in (first, duplicate):
            final = await app.get_job(job.id)
            assert final is not None
            assert final.result is not None
            summary.append((final.status, final.attempts, final.result.value))
        assert summary == [
            (JobStatus.COMPLETED, 3, "already credited"),
            (JobStatus.COMPLETED, 1, "already credited"),
        ]
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(ledger)).scalar() == 1
    finally:
        ledger.drop(engine)
        await app.close()
