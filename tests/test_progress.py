"""Progress reporting on the memory broker: ``report_progress`` inside async and sync tasks,
coalesced writes (counted broker calls), none when nothing reports, bad input, outside a job,
events, ``taskit.testing``, and the stored bytes of jobs written before ``Job.progress``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
import pytest

from taskit import App, JobStatus, MemoryBroker, Progress, Settings, TaskitError, report_progress
from taskit._cli_admin import _progress_line
from taskit.audit import decode, encode
from taskit.errors import SerializationError
from taskit.events import EventKind, JobEvent
from taskit.job import Job, ProgressUpdate, decode_job, encode_arguments, encode_job
from taskit.progress import MAX_DATA_BYTES, MAX_MESSAGE_CHARS
from taskit.testing import Harness

pytestmark = pytest.mark.anyio

WAIT = 5.0


class CountingBroker(MemoryBroker):
    """Counts ``set_progress`` calls: each is one round trip on a real broker."""

    def __init__(self) -> None:
        super().__init__()
        self.progress_calls: list[int] = []

    async def set_progress(self, updates: Sequence[ProgressUpdate]) -> list[bool]:
        self.progress_calls.append(len(updates))
        return await super().set_progress(updates)


def make_app(**settings: Any) -> tuple[App, CountingBroker]:
    broker = CountingBroker()
    return App(broker, settings=Settings(**settings)), broker


async def run_burst(app: App, concurrency: int = 1) -> None:
    with anyio.fail_after(WAIT):
        await app.worker(concurrency=concurrency).run(burst=True)


async def test_a_thousand_reports_cost_one_write_and_the_last_is_stored() -> None:
    app, broker = make_app()

    @app.task
    async def crunch(n: int) -> int:
        for i in range(n):
            report_progress((i + 1) / n, f"item {i + 1} of {n}", done=i + 1)
        return n

    job = await crunch.enqueue(1000)
    await run_burst(app)

    final = await app.get_job(job.id)
    assert final is not None
    assert final.progress is not None
    assert final.status is JobStatus.COMPLETED
    assert (final.progress.fraction, final.progress.message) == (1.0, "item 1000 of 1000")
    assert final.progress.data == {"done": 1000}
    assert broker.progress_calls == [1]  # the last report, before the settle: one round trip


async def test_one_flush_carries_every_running_job() -> None:
    """Three jobs report and wait: one periodic flush stores all three in one call."""
    app, broker = make_app(progress_interval=0.05)
    gate, seen = anyio.Event(), anyio.Event()
    stored: list[str] = []

    @app.on(EventKind.PROGRESS)
    def on_progress(event: JobEvent) -> None:
        stored.append(event.job_id)
        if len(stored) == 3:
            seen.set()

    @app.task
    async def step(i: int) -> None:
        report_progress(0.5, f"job {i}")
        await gate.wait()

    jobs = [await step.enqueue(i) for i in range(3)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_burst, app, 3)
        with anyio.fail_after(WAIT):
            await seen.wait()
        assert broker.progress_calls[0] == 3  # the three jobs, in the first flush
        for job in jobs:
            mid = await app.get_job(job.id)
            assert mid is not None
            assert mid.progress is not None
            assert mid.status is JobStatus.RUNNING
        gate.set()
    assert sorted(stored) == sorted(j.id for j in jobs)  # nothing new at the end: no rewrite
    assert broker.progress_calls == [3]


async def test_no_write_at_all_when_nothing_reports() -> None:
    app, broker = make_app(progress_interval=0.01)
    ran = anyio.Event()

    @app.task
    async def quiet(x: int) -> int:
        await anyio.sleep(0.1)  # long enough for ten flush ticks
        ran.set()
        return x

    for i in range(3):
        await quiet.enqueue(i)
    await run_burst(app)

    assert ran.is_set()
    assert broker.progress_calls == []


async def test_a_sync_task_reports_from_its_thread() -> None:
    app, _ = make_app()

    @app.task
    def resize(images: int) -> int:
        for i in range(images):
            report_progress((i + 1) / images, image=i)
        return images

    job = await resize.enqueue(4)
    await run_burst(app)

    final = await app.get_job(job.id)
    assert final is not None
    assert final.progress is not None
    assert (final.progress.fraction, final.progress.data) == (1.0, {"image": 3})


def test_outside_a_running_job_it_names_the_problem() -> None:
    with pytest.raises(TaskitError, match="outside a running job"):
        report_progress(0.5)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"fraction": 1.5}, ValueError, "between 0 and 1"),
        ({"fraction": -0.1}, ValueError, "between 0 and 1"),
        ({"fraction": math.nan}, ValueError, "between 0 and 1"),
        ({"fraction": True}, TypeError, "must be a number"),
        ({"fraction": "half"}, TypeError, "must be a number"),
        ({"message": 7}, TypeError, "must be text"),
        ({"message": "x" * (MAX_MESSAGE_CHARS + 1)}, ValueError, "over the limit"),
        ({"blob": b"x" * MAX_DATA_BYTES}, ValueError, "over the limit"),
        ({"thing": object()}, SerializationError, "cannot be stored as msgpack"),
    ],
    ids=[
        "over-1",
        "negative",
        "nan",
        "bool",
        "text",
        "message-type",
        "long-message",
        "big-data",
        "not-msgpack",
    ],
)
async def test_bad_input_is_refused_and_the_job_still_settles(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    app, _ = make_app()
    caught: list[Exception] = []

    @app.task
    async def careful() -> str:
        report_progress(0.1, "fine so far")
        try:
            report_progress(**kwargs)
        except Exception as exc:
            caught.append(exc)
        return "ok"

    @app.task(max_retries=0)
    async def careless() -> None:
        report_progress(**kwargs)

    kept, failed = await careful.enqueue(), await careless.enqueue()
    await run_burst(app)

    assert isinstance(caught[0], error)
    assert words in str(caught[0])
    done = await app.get_job(kept.id)
    assert done is not None
    assert done.progress is not None
    assert (done.status, done.progress.message) == (JobStatus.COMPLETED, "fine so far")
    dead = await app.get_job(failed.id)
    assert dead is not None
    assert (dead.status, dead.error_type, dead.progress) == (
        JobStatus.DEAD_LETTER, error.__name__, None,
    )  # fmt: skip


async def test_the_harness_keeps_every_report_and_stores_the_last() -> None:
    app = App(MemoryBroker())
    events: list[JobEvent] = []
    app.on(EventKind.PROGRESS)(events.append)

    @app.task
    def upload(parts: int) -> None:
        for part in range(1, parts + 1):
            report_progress(part / parts, f"part {part}")

    with Harness(app, eager=True) as harness:
        job = await upload.enqueue(3)
        assert [p.message for p in harness.reports[job.id]] == ["part 1", "part 2", "part 3"]
        assert job.progress is not None
        assert job.progress.fraction == 1.0
        assert [e.progress for e in events] == [harness.reports[job.id][-1]]


def test_a_progress_event_travels_through_the_audit_stream_and_to_json() -> None:
    progress = Progress(updated_at=datetime(2024, 5, 1, tzinfo=UTC), fraction=0.5, data={"n": 1})
    at = datetime(2024, 5, 1, tzinfo=UTC)
    event = JobEvent(kind=EventKind.PROGRESS, job_id="j", task="t", queue="q", attempt=1,
                     at=at, created_at=at, progress=progress)  # fmt: skip

    assert decode(encode(event)) == event
    assert event.to_builtins()["progress"] == {
        "updated_at": "2024-05-01T00:00:00Z", "fraction": 0.5, "data": {"n": 1},
    }  # fmt: skip


def test_the_cli_line_says_what_was_reported() -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    full = Progress(updated_at=at, fraction=0.4, message="copying", data={"files": 4})
    assert _progress_line(full) == ('40% copying {"files": 4} (at 2024-05-01T00:00:00+00:00)')
    assert _progress_line(Progress(updated_at=at)) == "(at 2024-05-01T00:00:00+00:00)"


def test_a_job_stored_before_progress_existed_still_decodes() -> None:
    """Bytes of a Job without the trailing ``progress`` position (what earlier versions wrote)
    read back with ``progress`` None."""
    job = Job(id="j", task="t", queue="q", payload=encode_arguments([1], {}),
              created_at=datetime(2024, 5, 1, tzinfo=UTC))  # fmt: skip
    items = msgspec.msgpack.decode(encode_job(job))
    older = msgspec.msgpack.encode(items[:-1])  # one position fewer

    assert decode_job(older) == job
    assert decode_job(older).progress is None


async def test_process_one_stores_the_last_report_before_it_settles() -> None:
    from taskit.oneshot import process_one

    app, broker = make_app()

    @app.task
    async def one() -> str:
        for i in range(10):
            report_progress(i / 9)
        return "done"

    job = await one.enqueue()
    result = await process_one(app)

    assert result is not None
    assert result.value == "done"
    final = await app.get_job(job.id)
    assert final is not None
    assert final.progress is not None
    assert final.progress.fraction == 1.0
    assert broker.progress_calls == [1]
