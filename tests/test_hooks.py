"""taskit.hooks on the memory broker: enqueue hooks wrap storing a batch (and may add metadata),
run hooks wrap each attempt and hear how it settled; a raising run hook never changes a job."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from types import TracebackType

import anyio
import anyio.to_thread
import msgspec
import pytest

from taskit import App, MemoryBroker
from taskit.hooks import Hooks
from taskit.job import Job, Outcome, OutcomeKind
from taskit.worker import Worker, WorkerParts

pytestmark = pytest.mark.anyio


def stamp(key: str, value: str, log: list[str]) -> object:
    @contextlib.contextmanager
    def hook(jobs: list[Job]) -> Iterator[list[Job]]:
        log.append(f"enter {key}")
        try:
            yield [msgspec.structs.replace(j, metadata={**j.metadata, key: value}) for j in jobs]
        except BaseException as exc:
            log.append(f"error {key}: {exc}")
            raise
        finally:
            log.append(f"exit {key}")

    return hook


class Recorder:
    """A run hook recording what it saw, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []

    def __call__(self, job: Job) -> Recorder.Attempt:
        return Recorder.Attempt(self, job)

    class Attempt:
        def __init__(self, owner: Recorder, job: Job) -> None:
            self.owner, self.job = owner, job

        def __enter__(self) -> object:
            self.owner.log.append(("enter", self.job.attempts))
            return self

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            self.owner.log.append(("exit", exc_type))

        def settled(self, outcome: Outcome | None, applied: bool) -> None:
            kind = outcome.kind if outcome is not None else None
            self.owner.log.append(("settled", (kind, applied)))


async def test_enqueue_hooks_add_metadata_in_order_and_see_the_enqueues_error() -> None:
    app = App(MemoryBroker())
    seen: list[str] = []
    app.hooks.on_enqueue(stamp("a", "1", seen))  # type: ignore[arg-type]
    app.hooks.on_enqueue(stamp("b", "2", seen))  # type: ignore[arg-type]

    @app.task(name="noop")
    async def noop() -> None:
        return None

    job = await noop.options(metadata={"mine": "x"}).enqueue()
    assert job.metadata == {"mine": "x", "a": "1", "b": "2"}
    stored = await app.get_job(job.id)
    assert stored is not None
    assert stored.metadata == job.metadata
    assert seen == ["enter a", "enter b", "exit b", "exit a"]

    class Down(MemoryBroker):
        async def enqueue(
            self, jobs: Sequence[Job], *, delays: Sequence[float] | None = None
        ) -> list[Job]:
            raise ConnectionError("down")

    seen.clear()
    app.broker = Down()
    with pytest.raises(ConnectionError):
        await noop.enqueue()
    assert seen == ["enter a", "enter b", "error b: down", "exit b", "error a: down", "exit a"]


async def test_a_sync_enqueue_runs_its_hooks_in_the_calling_thread() -> None:
    app = App(MemoryBroker())
    threads: list[int] = []

    @contextlib.contextmanager
    def where(jobs: list[Job]) -> Iterator[list[Job]]:
        import threading

        threads.append(threading.get_ident())
        yield jobs

    app.hooks.on_enqueue(where)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    def enqueue() -> int:
        import threading

        noop.enqueue_sync()
        return threading.get_ident()

    try:
        caller = await anyio.to_thread.run_sync(enqueue)
    finally:
        app.producer.bridge.stop()
    assert threads == [caller]


async def test_run_hooks_wrap_each_attempt_and_hear_how_it_settled() -> None:
    app = App(MemoryBroker())
    recorder = app.hooks.on_run(Recorder())
    inside: list[object] = []

    @app.task(name="flaky", max_retries=1, backoff=0.0)
    async def flaky() -> None:
        inside.append(recorder.log[-1])  # type: ignore[attr-defined]
        if len(inside) == 1:
            raise ValueError("once")

    await flaky.enqueue()
    await app.worker().run(burst=True)
    assert inside == [("enter", 1), ("enter", 2)]  # the handler runs inside the attempt
    assert recorder.log == [  # type: ignore[attr-defined]
        ("enter", 1),
        ("exit", None),
        ("settled", (OutcomeKind.RETRY, True)),
        ("enter", 2),
        ("exit", None),
        ("settled", (OutcomeKind.COMPLETE, True)),
    ]


async def test_an_outcome_the_broker_refused_is_settled_as_not_applied() -> None:
    class Refusing(MemoryBroker):
        async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
            return [False] * len(outcomes)

    class Waited(Recorder.Attempt):
        def settled(self, outcome: Outcome | None, applied: bool) -> None:
            super().settled(outcome, applied)
            done.set()

    done = anyio.Event()
    broker = Refusing()
    app = App(broker)
    recorder = Recorder()

    @app.task(name="noop")
    async def noop() -> None:
        return None

    await noop.enqueue()
    hooks = Hooks()
    hooks.on_run(lambda job: Waited(recorder, job))
    worker = Worker(WorkerParts(broker=broker, tasks=app.tasks, hooks=hooks))
    with anyio.fail_after(5):
        async with worker:
            await done.wait()
    assert recorder.log[-1] == ("settled", (OutcomeKind.COMPLETE, False))


async def test_a_raising_run_hook_is_logged_and_the_job_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(MemoryBroker())

    def broken(job: Job) -> Recorder.Attempt:
        raise RuntimeError("hook bug")

    app.hooks.on_run(broken)  # type: ignore[arg-type]
    recorder = app.hooks.on_run(Recorder())

    @app.task(name="noop")
    async def noop() -> str:
        return "ran"

    job = await noop.enqueue()
    with caplog.at_level(logging.ERROR, logger="taskit.hooks"):
        stats = await app.worker().run(burst=True)
    assert stats.completed == 1
    assert (await app.result(job.id, timeout=1)).value == "ran"
    assert "hook bug" in caplog.text
    assert job.id in caplog.text
    assert [step for step, _ in recorder.log] == ["enter", "exit", "settled"]  # type: ignore[attr-defined]


def test_hooks_are_false_until_one_is_added_and_refuse_what_is_not_callable() -> None:
    hooks = Hooks()
    assert not hooks
    recorder = Recorder()
    hooks.on_run(recorder)
    assert hooks
    hooks.remove(recorder)
    assert not hooks
    with pytest.raises(TypeError, match="callable"):
        hooks.on_enqueue("nope")  # type: ignore[arg-type]
