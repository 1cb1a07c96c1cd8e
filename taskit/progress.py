"""Progress reporting: a running job says how far it has come, cheaply.

    @app.task
    async def import_rows(path: str) -> int:
        rows = load(path)
        for i, row in enumerate(rows):
            store(row)
            taskit.report_progress((i + 1) / len(rows), f"row {i + 1} of {len(rows)}")
        return len(rows)

``report_progress`` only replaces the running job's latest value in memory (a ``Reporter``,
which the ``Executor`` puts in a ContextVar for the length of the handler's call; a sync handler
gets it in its thread, as anyio copies the context there). A worker's ``ProgressFlusher`` sends
the latest value of every job that reported since its last send in one ``Broker.set_progress``
call each ``progress_interval`` seconds, and the last value of a job before its outcome is
settled. So a loop reporting a thousand times costs a handful of round trips, and a worker
whose jobs never report makes none. Each write is fenced by the job's lease token: a worker
that lost the lease changes nothing. Applied writes are ``progress`` events.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from taskit._outage import Outage
from taskit.errors import SerializationError, TaskitError
from taskit.job import Job, Progress, ProgressUpdate

if TYPE_CHECKING:
    from taskit.broker.base import Broker

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_MESSAGE_CHARS",
    "ProgressFlusher",
    "Reporter",
    "make_progress",
    "report_progress",
]

log = logging.getLogger(__name__)

#: Longest ``message`` a report may carry (characters): progress is a status line, not a log.
MAX_MESSAGE_CHARS = 1024
#: Largest ``data`` a report may carry, msgpack-encoded (bytes): it is written on every flush.
MAX_DATA_BYTES = 4096

_ENCODER = msgspec.msgpack.Encoder()


@dataclass(eq=False, slots=True)
class Reporter:
    """One running attempt's latest progress (``latest``) and the one last sent (``sent``).

    Written by the handler (any thread: one reference assignment, atomic), read by the flusher:
    a value not yet sent is ``latest is not sent``, so no lock is needed."""

    job: Job
    token: str
    latest: Progress | None = None
    sent: Progress | None = None
    #: Told of every report as it is made (``taskit.testing`` keeps them all); None in a worker.
    listener: Callable[[Job, Progress], None] | None = None

    @property
    def unsent(self) -> Progress | None:
        """The latest value if it was not sent yet, else None."""
        latest = self.latest
        return None if latest is self.sent else latest


_current: ContextVar[Reporter | None] = ContextVar("taskit_progress", default=None)


def report_progress(
    fraction: float | None = None, message: str | None = None, **data: Any
) -> Progress:
    """Report the running job's progress: ``fraction`` done (0..1), a short ``message``, and
    small ``data`` (msgpack-able keyword values). Each call replaces the one before; the worker
    stores the latest (``Job.progress``) within ``progress_interval`` seconds and before the job
    settles. Cheap: no I/O here. Returns what was recorded.

    Call it from inside a task (async or sync). Raises ``TaskitError`` outside a running job,
    ``ValueError`` for a fraction outside 0..1 (or NaN) or a message or data over the caps
    (``MAX_MESSAGE_CHARS``, ``MAX_DATA_BYTES``), ``TypeError`` for a fraction that is not a
    number or a message that is not text, and ``SerializationError`` for data that msgpack
    cannot encode. A refused report changes nothing stored."""
    reporter = _current.get()
    if reporter is None:
        raise TaskitError(
            "report_progress() was called outside a running job: call it from inside a task's "
            "function while a worker (or taskit.testing's drain) runs it"
        )
    progress = make_progress(fraction, message, data)
    reporter.latest = progress
    if reporter.listener is not None:
        reporter.listener(reporter.job, progress)
    return progress


def make_progress(fraction: float | None, message: str | None, data: dict[str, Any]) -> Progress:
    """A checked ``Progress`` stamped now (see ``report_progress`` for the errors)."""
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"progress fraction must be a number, got {type(fraction).__name__}")
        if math.isnan(fraction) or not 0 <= fraction <= 1:
            raise ValueError(f"progress fraction must be between 0 and 1, got {fraction!r}")
        fraction = float(fraction)
    if message is not None:
        if not isinstance(message, str):
            raise TypeError(f"progress message must be text, got {type(message).__name__}")
        if len(message) > MAX_MESSAGE_CHARS:
            raise ValueError(
                f"progress message is {len(message)} characters, over the limit of "
                f"{MAX_MESSAGE_CHARS}"
            )
    if data:
        _check_data(data)
    return Progress(
        updated_at=datetime.now(UTC), fraction=fraction, message=message, data=dict(data)
    )


def _check_data(data: dict[str, Any]) -> None:
    try:
        size = len(_ENCODER.encode(data))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise SerializationError(f"progress data cannot be stored as msgpack: {exc}") from None
    if size > MAX_DATA_BYTES:
        raise ValueError(
            f"progress data is {size} bytes as msgpack, over the limit of {MAX_DATA_BYTES}"
        )


class reporting:  # lower case: a context manager, like contextlib's
    """``with reporting(reporter):`` makes ``report_progress`` write to ``reporter``."""

    __slots__ = ("_reporter", "_token")

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter

    def __enter__(self) -> Reporter:
        self._token = _current.set(self._reporter)
        return self._reporter

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


class ProgressFlusher:
    """Sends the unsent progress of running attempts to ``broker`` in one ``set_progress``
    call: every ``interval`` seconds in ``run``, and on demand (``flush``, as a job ends). One
    flush at a time, so a later value never lands before an earlier one. ``on_stored(job,
    progress)`` is called for each value the broker stored (the events)."""

    def __init__(
        self,
        broker: Broker,
        interval: float,
        on_stored: Callable[[Job, Progress], None] | None = None,
    ) -> None:
        self._broker = broker
        self._interval = interval
        self._on_stored = on_stored
        self._lock = anyio.Lock()
        self._outage = Outage("storing progress", log)

    async def run(self, reporters: Callable[[], Iterable[Reporter]]) -> None:
        """Flush ``reporters()`` (the running attempts) every ``interval`` seconds until
        cancelled."""
        while True:
            await anyio.sleep(self._interval)
            await self.flush(reporters())

    async def flush(self, reporters: Iterable[Reporter]) -> None:
        """Send the unsent progress of ``reporters`` (nothing to send: no call). A broker
        failure is logged once per outage and the values stay unsent, for the next flush."""
        async with self._lock:
            pending = [(r, p) for r in reporters if (p := r.unsent) is not None]
            if not pending:
                return
            updates = [ProgressUpdate(r.job.id, r.token, p) for r, p in pending]
            try:
                stored = await self._broker.set_progress(updates)
                self._outage.recovered()
            except (TaskitError, OSError) as exc:
                self._outage.failed(exc, f"storing the progress of {len(updates)} jobs failed")
                return
            for (reporter, progress), ok in zip(pending, stored, strict=True):
                reporter.sent = progress
                if ok and self._on_stored is not None:
                    self._on_stored(reporter.job, progress)
