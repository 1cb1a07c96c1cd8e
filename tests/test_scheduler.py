"""Periodic schedules on the memory broker with a fake clock: declaration errors, due times,
exactly-once claims between schedulers, the missed-runs policy, and schedules from files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from taskit import App, ConfigurationError, MemoryBroker
from taskit.clock import FakeClock
from taskit.job import JobStatus
from taskit.scheduler import Scheduler, load_schedules

pytestmark = pytest.mark.anyio

# 2024-01-01 00:00:00 UTC, a Monday.
MIDNIGHT = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


def make_app(clock: FakeClock) -> App:
    app = App(MemoryBroker(clock=clock))

    @app.task(name="sweep")
    async def sweep() -> None: ...

    @app.task(name="report")
    def report(fmt: str, pages: int = 1) -> str:
        return fmt * pages

    return app


def due_times(jobs: list) -> list[str]:  # type: ignore[type-arg]
    return [job.metadata["due_at"] for job in jobs]


async def test_interval_fires_at_each_multiple_of_every() -> None:
    clock = FakeClock(MIDNIGHT + 10)
    app = make_app(clock)
    app.periodic(every=60)(app.get_task("sweep"))
    scheduler = Scheduler(app, clock=clock)
    assert await scheduler.tick() == []  # skip: 00:00 passed before it started
    assert scheduler.next_due() == MIDNIGHT + 60
    clock.set(MIDNIGHT + 59.9)
    assert await scheduler.tick() == []
    clock.set(MIDNIGHT + 60)
    [job] = await scheduler.tick()
    assert job.task == "sweep"
    assert job.id == f"schedule:sweep:{round((MIDNIGHT + 60) * 1000)}"
    assert job.created_by == "scheduler:sweep"
    assert job.metadata == {"schedule": "sweep", "due_at": "2024-01-01T00:01:00+00:00"}
    assert await scheduler.tick() == []  # once per due time
    clock.set(MIDNIGHT + 121)
    assert due_times(await scheduler.tick()) == ["2024-01-01T00:02:00+00:00"]


async def test_a_scheduler_that_fell_behind_enqueues_only_the_latest_run() -> None:
    clock = FakeClock(MIDNIGHT)
    app = make_app(clock)
    app.periodic(every=60)(app.get_task("sweep"))
    scheduler = Scheduler(app, clock=clock)
    await scheduler.tick()
    clock.set(MIDNIGHT + 3600 + 5)  # the process was paused for an hour
    assert due_times(await scheduler.tick()) == ["2024-01-01T01:00:00+00:00"]


async def test_cron_fires_at_its_matches_with_arguments() -> None:
    clock = FakeClock(MIDNIGHT)
    app = make_app(clock)
    app.periodic(cron="30 9 * * mon-fri", kwargs={"fmt": "pdf"}, args=())(app.get_task("report"))
    scheduler = Scheduler(app, clock=clock)
    fired: list[str] = []
    for _ in range(7 * 24):  # a week, hour by hour, then a minute into each hour
        clock.advance(3600)
        fired += due_times(await scheduler.tick())
    assert fired == [f"2024-01-0{d}T09:30:00+00:00" for d in range(1, 6)]  # Mon..Fri only
    job = await app.get_job(f"schedule:report:{round((MIDNIGHT + 9.5 * 3600) * 1000)}")
    assert job is not None
    assert job.kwargs == {"fmt": "pdf"}


async def test_cron_in_a_time_zone_follows_daylight_saving() -> None:
    # Europe/Paris moves from +01:00 to +02:00 on 2024-03-31.
    start = datetime(2024, 3, 29, tzinfo=UTC).timestamp()
    clock = FakeClock(start)
    app = make_app(clock)
    app.periodic(cron="0 9 * * *", tz="Europe/Paris")(app.get_task("sweep"))
    scheduler = Scheduler(app, clock=clock)
    fired: list[str] = []
    for _ in range(4 * 24 * 4):
        clock.advance(900)
        fired += due_times(await scheduler.tick())
    assert fired == [
        "2024-03-29T08:00:00+00:00",
        "2024-03-30T08:00:00+00:00",
        "2024-03-31T07:00:00+00:00",
        "2024-04-01T07:00:00+00:00",
    ]


async def test_cron_aliases_and_names() -> None:
    clock = FakeClock(MIDNIGHT + 1)
    app = make_app(clock)
    app.periodic(cron="@daily", name="daily")(app.get_task("sweep"))
    app.periodic(cron="0 0 1 feb *", name="february")(app.get_task("sweep"))
    scheduler = Scheduler(app, clock=clock)
    await scheduler.tick()
    clock.set(datetime(2024, 2, 1, 0, 0, 30, tzinfo=UTC).timestamp())
    jobs = await scheduler.tick()
    assert sorted(j.metadata["schedule"] for j in jobs) == ["daily", "february"]


async def test_two_schedulers_enqueue_each_run_once() -> None:
    clock = FakeClock(MIDNIGHT)
    app = make_app(clock)
    app.periodic(every=10)(app.get_task("sweep"))
    first, second = Scheduler(app, clock=clock), Scheduler(app, clock=clock)
    got: list[str] = []
    for _ in range(30):
        clock.advance(1)
        for scheduler in (second, first) if clock.time() % 2 else (first, second):
            got += due_times(await scheduler.tick())
    assert len(got) == len(set(got)) == 3
    stats = await app.stats()
    assert stats["default"].queued == 3


async def test_missed_once_enqueues_the_latest_missed_run_on_start() -> None:
    clock = FakeClock(MIDNIGHT + 3 * 3600 + 5)
    app = make_app(clock)
    app.periodic(cron="0 * * * *", missed="once")(app.get_task("sweep"))
    first = Scheduler(app, clock=clock)
    assert due_times(await first.tick()) == ["2024-01-01T03:00:00+00:00"]
    restarted = Scheduler(app, clock=clock)  # already enqueued by the first: not again
    assert await restarted.tick() == []


async def test_missed_skip_forgets_runs_from_before_the_start() -> None:
    clock = FakeClock(MIDNIGHT + 3 * 3600 + 5)
    app = make_app(clock)
    app.periodic(cron="0 * * * *")(app.get_task("sweep"))
    assert await Scheduler(app, clock=clock).tick() == []


async def test_a_broker_error_is_logged_and_the_run_retried_next_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(MIDNIGHT)
    app = make_app(clock)
    app.periodic(every=60)(app.get_task("sweep"))
    scheduler = Scheduler(app, clock=clock)
    await scheduler.tick()
    clock.advance(60)
    real_claim = app.broker.claim

    async def broken(key: str, ttl: float) -> bool:
        raise ConnectionResetError("broker went away")

    app.broker.claim = broken  # type: ignore[method-assign]
    assert await scheduler.tick() == []
    assert "not enqueued yet: broker went away" in caplog.text
    app.broker.claim = real_claim  # type: ignore[method-assign]
    assert len(await scheduler.tick()) == 1


async def test_run_loop_enqueues_on_the_real_clock() -> None:
    app = make_app(FakeClock())
    app.broker = MemoryBroker()
    app.periodic(every=0.05)(app.get_task("sweep"))
    with anyio.move_on_after(0.33):
        await Scheduler(app).run()
    stats = (await app.stats())["default"]
    assert 4 <= stats.queued <= 7


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression '61 \\* \\* \\* \\*': Bad minute"),
        ({"cron": "* * *"}, "expected five fields"),
        ({"cron": "* * * * * *"}, "expected five fields"),
        ({"cron": "0 9 * * funday"}, "bad cron expression"),
        ({"every": 0}, "every= must be at least 0.001 seconds"),
        ({"every": float("inf")}, "every= must be at least"),
        ({"every": "5"}, "every= takes seconds"),
        ({}, "exactly one of every="),
        ({"every": 5, "cron": "* * * * *"}, "exactly one of every="),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_timing_is_an_error_at_declaration(options: dict, message: str) -> None:  # type: ignore[type-arg]
    app = App("memory://")
    with pytest.raises(ConfigurationError, match=message):
        app.periodic(**options)


def test_declaration_checks_the_arguments_and_the_name() -> None:
    app = make_app(FakeClock())
    report = app.get_task("report")
    with pytest.raises(ConfigurationError, match=r"schedule 'report': .*missing a required"):
        app.periodic(every=5)(report)
    with pytest.raises(ConfigurationError, match="argument 'fmt' cannot be serialized"):
        app.periodic(every=5, kwargs={"fmt": object()})(report)
    with pytest.raises(ConfigurationError, match="missed= must be 'skip' or 'once'"):
        app.periodic(every=5, kwargs={"fmt": "a"}, missed="twice")(report)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="args= must be a list or tuple, got the string"):
        app.periodic(every=5, args="a")(report)  # a str is a sequence: it was args=("a",)
    app.periodic(every=5, kwargs={"fmt": "a"})(report)
    with pytest.raises(ConfigurationError, match="schedule named 'report' is already registered"):
        app.periodic(every=9, kwargs={"fmt": "b"})(report)
    with pytest.raises(TypeError, match=r"above @app\.task"):
        app.periodic(every=5)(lambda: None)  # type: ignore[arg-type]


def test_schedules_from_toml_and_json(tmp_path: Path) -> None:
    app = make_app(FakeClock())
    toml = tmp_path / "schedules.toml"
    toml.write_text(
        '[[schedules]]\nname = "nightly"\ntask = "report"\ncron = "0 3 * * *"\n'
        'tz = "Europe/Paris"\nkwargs = { fmt = "pdf", pages = 2 }\n'
        '[[schedules]]\ntask = "sweep"\nevery = 300\nmissed = "once"\n'
    )
    added = load_schedules(app, toml)
    assert [s.name for s in added] == ["nightly", "sweep"]
    assert app.schedules["nightly"].kwargs == {"fmt": "pdf", "pages": 2}
    assert app.schedules["sweep"].missed == "once"
    data = [{"name": "hourly", "task": "report", "cron": "@hourly", "args": ["csv"]}]
    (tmp_path / "more.json").write_text(json.dumps(data))
    assert load_schedules(app, tmp_path / "more.json")[0].args == ("csv",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"task": "nope", "every": 5}]', "entry 1: schedule 'nope': unknown task 'nope'"),
        ('[{"task": "sweep", "cron": "0 25 * * *"}]', "entry 1: .*bad cron expression '0 25"),
        ('[{"task": "sweep", "every": 5, "colour": 1}]', "unknown field `colour`"),
        ('[{"every": 5}]', "missing required field `task`"),
        ('{"schedules": [{"task": "sweep", "every": "x"}]}', "Expected `float"),
        ("[not json", "not a valid schedules file"),
    ],
)
def test_a_bad_schedules_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    app = make_app(FakeClock())
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_schedules(app, path)
    assert app.schedules == {}


def test_a_bad_file_adds_nothing(tmp_path: Path) -> None:
    app = make_app(FakeClock())
    path = tmp_path / "s.json"
    path.write_text('[{"task": "sweep", "every": 5}, {"task": "sweep", "every": 6}]')
    with pytest.raises(ConfigurationError, match="entry 2: a schedule named 'sweep'"):
        load_schedules(app, path)
    assert app.schedules == {}
    with pytest.raises(ConfigurationError, match="cannot read schedules"):
        load_schedules(app, tmp_path / "missing.toml")


async def test_scheduled_jobs_run_like_any_other() -> None:
    clock = FakeClock(MIDNIGHT)
    app = make_app(clock)
    app.periodic(every=60, kwargs={"fmt": "x", "pages": 3})(app.get_task("report"))
    scheduler = Scheduler(app, clock=clock)
    await scheduler.tick()
    clock.advance(60)
    [job] = await scheduler.tick()
    await app.worker().run(burst=True)
    done = await app.get_job(job.id)
    assert done is not None
    assert done.status is JobStatus.COMPLETED
    assert done.result is not None
    assert done.result.value == "xxx"


def test_a_bad_toml_file_is_a_clear_error(tmp_path: Path) -> None:
    # tomllib loads only for a TOML file; its decode error is still a ConfigurationError
    app = make_app(FakeClock())
    path = tmp_path / "s.toml"
    path.write_text("[[schedules]\ntask = ")
    with pytest.raises(ConfigurationError, match=r"s\.toml: not a valid schedules file"):
        load_schedules(app, path)
    assert app.schedules == {}
