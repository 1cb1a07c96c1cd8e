"""The outbox on SQLite, PostgreSQL and MariaDB: a job exists if and only if its transaction
commits, and every committed row becomes exactly one job, however many relays run and whenever
one dies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from taskit import App, JobStatus
from taskit.broker.memory import MemoryBroker
from taskit.clock import FakeClock
from taskit.config import DEFAULT_RESULT_TTL
from taskit.errors import PayloadTooLargeError
from taskit.job import Job, JobResult, Outcome, OutcomeKind
from taskit.outbox import Outbox, Relay
from taskit.outbox.relay import RELAYED_RESULT_TTL
from taskit.producer import Producer

pytestmark = pytest.mark.anyio


def make_app(broker: MemoryBroker | None = None) -> App:
    app = App(MemoryBroker() if broker is None else broker)

    @app.task(name="signup.welcome", queue="mail")
    def welcome(user: str, n: int = 1) -> str:
        return f"hi {user} x{n}"

    return app


def rows(engine: Engine, outbox: Outbox) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox.table)).scalar_one())


async def queued(app: App, queue: str = "mail") -> list[Job]:
    """Every job waiting in ``queue`` (leased and handed back: the test's view only)."""
    leases = await app.broker.reserve([queue], count=1000, lease=60, timeout=0)
    return [lease.job for lease in leases]


async def test_a_committed_job_is_relayed_once_with_its_id_and_arguments(
    engine: Engine, outbox: Outbox
) -> None:
    app = make_app()
    task = app.get_task("signup.welcome")
    with Session(engine) as session, session.begin():
        job = outbox.enqueue(session, task, "ada", n=2)
    assert rows(engine, outbox) == 1

    relay = Relay(engine, outbox, app.producer)
    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0

    assert rows(engine, outbox) == 0
    [stored] = await queued(app)
    assert (stored.id, stored.task, stored.args, stored.kwargs) == (
        job.id, "signup.welcome", ("ada",), {"n": 2},
    )  # fmt: skip


async def test_a_rolled_back_job_never_exists(engine: Engine, outbox: Outbox) -> None:
    app = make_app()
    task = app.get_task("signup.welcome")
    with Session(engine) as session:
        outbox.enqueue(session, task, "ada")
        session.rollback()

    def failing_request() -> None:
        with Session(engine) as session, session.begin():
            outbox.enqueue(session, task, "bob")
            raise RuntimeError("the request failed after the enqueue")

    with pytest.raises(RuntimeError):
        failing_request()

    assert await Relay(engine, outbox, app.producer).relay_once() == 0
    assert await queued(app) == []


async def test_a_bad_call_writes_nothing(engine: Engine, outbox: Outbox) -> None:
    app = make_app()
    task = app.get_task("signup.welcome")
    with Session(engine) as session, session.begin():
        with pytest.raises(TypeError, match="n"):
            outbox.enqueue(session, task, "ada", n="many")  # type: ignore[arg-type]
        with pytest.raises(PayloadTooLargeError):
            outbox.enqueue(session, task, "x" * (app.settings.max_payload_bytes + 1))
    assert rows(engine, outbox) == 0


async def test_options_and_schedules_travel_with_the_row(engine: Engine, outbox: Outbox) -> None:
    app = make_app()
    task = app.get_task("signup.welcome")
    at = datetime.now(UTC) + timedelta(hours=1)
    with Session(engine) as session, session.begin():
        urgent = outbox.enqueue(session, task.options(queue="urgent", priority=5), "ada")
        later = outbox.schedule(session, at, task, "bob")
        soon = outbox.schedule(session, 3600, task, "cy")
    await Relay(engine, outbox, app.producer).relay_once()

    [got] = await queued(app, "urgent")
    assert (got.id, got.priority) == (urgent.id, 5)
    for job in (later, soon):
        stored = await app.broker.get(job.id)
        assert stored is not None
        assert stored.status is JobStatus.SCHEDULED
    assert await queued(app) == []


async def test_two_relays_at_once_move_each_row_once(engine: Engine, outbox: Outbox) -> None:
    app = make_app()
    task = app.get_task("signup.welcome")
    with Session(engine) as session, session.begin():
        ids = [outbox.enqueue(session, task, f"user{i}").id for i in range(60)]
    relays = [Relay(engine, outbox, app.producer, batch=7) for _ in range(2)]

    async def drain(relay: Relay) -> None:
        while await relay.relay_once():
            pass

    async with anyio.create_task_group() as tg:
        for relay in relays:
            tg.start_soon(drain, relay)

    assert rows(engine, outbox) == 0
    assert sorted(job.id for job in await queued(app)) == sorted(ids)
    assert (await app.broker.stats(["mail"]))["mail"].queued == 0  # all leased just above


class DiesAfterEnqueue(Producer):
    """A relay's producer that stores the jobs, then fails as a relay killed before its commit:
    the broker has the jobs, the database rolls the pass back."""

    async def submit(self, jobs: object, delays: object = None) -> list[Job]:
        await super().submit(jobs, delays)  # type: ignore[arg-type]
        raise ConnectionResetError("relay died between enqueue and delete")


async def test_a_relay_dead_before_its_commit_enqueues_nothing_twice(
    engine: Engine, outbox: Outbox
) -> None:
    app = make_app()
    task = app.get_task("signup.welcome")
    with Session(engine) as session, session.begin():
        ran, waiting = (outbox.enqueue(session, task, name) for name in ("ada", "bob"))
    dying = Relay(engine, outbox, DiesAfterEnqueue(app.broker, app.settings))
    with pytest.raises(ConnectionResetError):
        await dying.relay_once()
    assert rows(engine, outbox) == 2  # rolled back: the rows wait for the next pass
    # One of the two jobs ran to completion meanwhile; the other still waits.
    [lease] = await app.broker.reserve(["mail"], count=1, lease=60, timeout=0)
    assert lease.job.id == ran.id
    done = Outcome(
        job_id=ran.id, token=lease.token, kind=OutcomeKind.COMPLETE,
        result=JobResult(success=True, value="hi"),
    )  # fmt: skip
    assert await app.broker.settle([done]) == [True]

    assert await Relay(engine, outbox, app.producer).relay_once() == 2

    assert rows(engine, outbox) == 0
    finished = await app.broker.get(ran.id)
    assert finished is not None
    assert finished.status is JobStatus.COMPLETED  # not replaced
    assert [job.id for job in await queued(app)] == [waiting.id]  # and not doubled


async def test_a_relayed_job_is_remembered_a_day_past_the_brokers_result_ttl(
    engine: Engine, outbox: Outbox
) -> None:
    clock = FakeClock()
    app = make_app(MemoryBroker(clock=clock))  # its result TTL: the default, ten minutes
    task = app.get_task("signup.welcome")
    with Session(engine) as session, session.begin():
        ran = outbox.enqueue(session, task, "ada")
        own = outbox.enqueue(session, task.options(result_ttl=60), "bob")
    dying = Relay(engine, outbox, DiesAfterEnqueue(app.broker, app.settings))
    with pytest.raises(ConnectionResetError):
        await dying.relay_once()
    leases = await app.broker.reserve(["mail"], count=2, lease=60, timeout=0)
    assert [held.job.result_ttl for held in leases] == [RELAYED_RESULT_TTL, 60.0]
    ends = [  # as a worker settles them: with the job's own TTL
        Outcome(
            job_id=held.job.id,
            token=held.token,
            kind=OutcomeKind.COMPLETE,
            result=JobResult(success=True, value="hi"),
            result_ttl=held.job.result_ttl,
        )
        for held in leases
    ]
    assert await app.broker.settle(ends) == [True, True]

    clock.advance(DEFAULT_RESULT_TTL * 6)  # the database was away an hour

    assert await Relay(engine, outbox, app.producer).relay_once() == 2
    finished = await app.broker.get(ran.id)
    assert finished is not None
    assert finished.status is JobStatus.COMPLETED  # remembered: not enqueued again
    again = await app.broker.get(own.id)  # its own 60 s chose otherwise: stored anew
    assert again is not None
    assert again.status is JobStatus.PENDING


async def test_a_row_that_is_not_a_job_is_dropped_and_logged(
    engine: Engine, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    task = app.get_task("signup.welcome")
    with Session(engine) as session, session.begin():
        good = outbox.enqueue(session, task, "ada")
        session.execute(
            outbox.table.insert().values(job_id="bad", queue="mail", job=b"\xc1", created_at=0.0)
        )
    assert await Relay(engine, outbox, app.producer).relay_once() == 2
    assert [job.id for job in await queued(app)] == [good.id]
    assert "outbox row bad is not a job" in caplog.text


async def test_run_waits_out_a_failing_database_then_relays(engine: Engine, outbox: Outbox) -> None:
    app = make_app()
    task = app.get_task("signup.welcome")
    with Session(engine) as session, session.begin():
        job = outbox.enqueue(session, task, "ada")
    broken = Relay(engine, Outbox(name="i13_outbox_missing"), app.producer, idle=0.01)
    with anyio.move_on_after(0.3):
        await broken.run()  # the table is missing: every pass fails, the loop waits it out
    relay = Relay(engine, outbox, app.producer, idle=0.01)
    with anyio.move_on_after(0.5):
        await relay.run()
    assert [stored.id for stored in await queued(app)] == [job.id]


def test_bad_relay_settings_are_refused(engine: Engine, outbox: Outbox) -> None:
    producer = make_app().producer
    with pytest.raises(ValueError, match="batch"):
        Relay(engine, outbox, producer, batch=0)
    with pytest.raises(ValueError, match="idle"):
        Relay(engine, outbox, producer, idle=-1)


async def test_a_relay_skips_the_rows_another_relay_holds(
    row_locking: tuple[Engine, Outbox],
) -> None:
    engine, outbox = row_locking  # SQLite has one writer: a second relay waits for the first
    app = make_app()
    task = app.get_task("signup.welcome")
    with Session(engine) as session, session.begin():
        held, free = (outbox.enqueue(session, task, name) for name in ("ada", "bob"))
    t = outbox.table
    with engine.connect() as other, other.begin():  # another relay, mid-pass on the first row
        other.execute(select(t.c.seq).order_by(t.c.seq).limit(1).with_for_update())
        assert await Relay(engine, outbox, app.producer).relay_once() == 1
        assert [job.id for job in await queued(app)] == [free.id]
    assert await Relay(engine, outbox, app.producer).relay_once() == 1
    assert [job.id for job in await queued(app)] == [held.id]


async def test_one_job_id_in_two_rows_is_one_job(engine: Engine, outbox: Outbox) -> None:
    app = make_app()
    for batch in (1, 5):  # the twin in the next pass, and in the same pass
        unique = app.get_task("signup.welcome").options(job_id=f"welcome-{batch}")
        for name in ("ada", "twin"):
            with Session(engine) as session, session.begin():
                outbox.enqueue(session, unique, name)
        relay = Relay(engine, outbox, app.producer, batch=batch)
        while await relay.relay_once():
            pass
        [job] = await queued(app)
        assert (job.id, job.args) == (f"welcome-{batch}", ("ada",))
