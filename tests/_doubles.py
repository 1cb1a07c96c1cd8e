"""Test doubles shared by the worker and execution tests (defined once, imported by both)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import anyio

from taskit import MemoryBroker
from taskit.clock import FakeClock
from taskit.job import Job, Outcome, decode_arguments, encode_arguments, new_job_id

WAIT = 5.0  # upper bound on any wait: a hang fails the test instead of stalling the run


class WatchedBroker(MemoryBroker):
    """A MemoryBroker that records every settle, so a test can wait for the n-th one."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        super().__init__(clock=clock)
        self.settled: list[tuple[Outcome, bool]] = []
        self._news: anyio.Event | None = None

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        applied = await super().settle(outcomes)
        self.settled.extend(zip(outcomes, applied, strict=True))
        if self._news is not None:
            self._news.set()
        return applied

    async def wait_settled(self, count: int) -> list[tuple[Outcome, bool]]:
        """The first ``count`` settles (outcome, applied), waiting until there are that many."""
        with anyio.fail_after(WAIT):
            while len(self.settled) < count:
                self._news = anyio.Event()
                await self._news.wait()
        return self.settled[:count]

    async def outcomes(self, count: int) -> list[Outcome]:
        """The first ``count`` settled outcomes, waiting until there are that many."""
        return [outcome for outcome, _ in await self.wait_settled(count)]


def _no_backoff(attempt: int) -> float:
    return 0.0


@dataclass
class StubTask:
    """A stand-in for ``Task`` with exactly what the worker and the executor use of one (``name``,
    ``fn``, ``is_async``, ``opts``' timeout, backoff, on_failure, retry_on and dont_retry_on,
    ``load_arguments``), so they can be tested without any App. Arguments are decoded, not
    converted."""

    fn: Callable[..., Any]
    name: str = "stub"
    opts: Any = field(
        default_factory=lambda: SimpleNamespace(
            timeout=None, backoff=_no_backoff, on_failure=None, retry_on=None, dont_retry_on=None
        )
    )

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def load_arguments(self, job: Job) -> tuple[list[Any], dict[str, Any]]:
        return decode_arguments(job.payload)


def stub_job(task: str, *args: Any, queue: str = "default", max_retries: int = 0) -> Job:
    """A job of ``task`` with positional ``args``, built without any App or Task."""
    return Job(
        id=new_job_id(), task=task, queue=queue, payload=encode_arguments(args, {}),
        created_at=datetime.now(UTC), max_retries=max_retries,
    )  # fmt: skip


def no_app(*args: object, **kwargs: object) -> None:
    """Patched over ``App.__init__`` by a test that proves it builds no App."""
    raise AssertionError("this test must not build an App")
