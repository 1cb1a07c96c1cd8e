"""Periodic tasks: interval and cron schedules, each due run enqueued exactly once.

    @app.periodic(every=300)                                   # at :00, :05, :10 ... (UTC)
    @app.task
    async def sweep() -> None: ...

    @app.periodic(cron="0 3 * * mon-fri", tz="Europe/Paris", kwargs={"fmt": "pdf"})
    @app.task
    def report(fmt: str) -> None: ...

Or from a file (``load_schedules``), for deployments that configure jobs without code:

    [[schedules]]
    name = "nightly-report"
    task = "reports.report"
    cron = "0 3 * * *"
    kwargs = { fmt = "pdf" }

or from JSON text in the same format (``load_schedules_json``; the CLI adds the
``TASKIT_SCHEDULE_JSON`` setting's this way wherever it loads a schedules file):

    TASKIT_SCHEDULE_JSON='[{"task": "reports.report", "cron": "0 3 * * *"}]'

Due times are absolute, so every process computes the same ones: an interval schedule is due at
each multiple of ``every`` seconds since the epoch; a cron one at each match of its five fields
(minute hour day-of-month month day-of-week; ranges, steps, lists, names, ``@daily`` and friends)
in its time zone, DST included (parsed and evaluated by ``cronsim``).

Exactly once: any number of ``Scheduler``s may run (in workers started with ``--scheduler`` or
``taskit scheduler``). For each due run each of them asks the broker to ``claim`` the key
``schedule:<name>:<due ms>``; the one that gets it enqueues the job (its id is that key too), the
others skip it. A scheduler that fell behind (a paused process) enqueues only the latest due run.

Missed runs while no scheduler was running: ``missed="skip"`` (default) forgets them;
``missed="once"`` enqueues the latest one on start, unless some scheduler already did.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar

import anyio
import msgspec

from taskit._outage import Outage
from taskit.clock import Clock, SystemClock
from taskit.errors import ConfigurationError, SerializationError, TaskitError, UnknownTaskError
from taskit.job import Job

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from taskit.broker.base import Broker
    from taskit.task import Task

__all__ = [
    "Missed", "Schedule", "ScheduleBook", "Scheduler", "SchedulerHost", "load_schedules",
    "load_schedules_json", "periodic",
]  # fmt: skip

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: What to do about runs that fell due while no scheduler was running.
Missed = Literal["skip", "once"]
#: Longest nap of the scheduler loop, so it notices a clock that jumped (and stops promptly).
MAX_NAP = 1.0
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@dataclass(frozen=True)
class _Timing:
    """When a schedule is due: every ``every_ms`` since the epoch, or at ``cron`` in ``zone``."""

    every_ms: int | None
    cron: str | None
    zone: ZoneInfo

    def latest(self, t: float) -> float:
        """The latest due time <= ``t`` (seconds since the epoch)."""
        if self.every_ms is not None:
            return (math.floor(t * 1000) // self.every_ms) * self.every_ms / 1000
        assert self.cron is not None
        # cronsim's reverse iteration gives matches strictly before its start; cron matches fall
        # on whole minutes, so "<= t" is "< t rounded down to the second, plus one second".
        from cronsim import CronSim  # loaded by the first cron schedule (_timing)

        start = datetime.fromtimestamp(t, self.zone).replace(microsecond=0) + timedelta(seconds=1)
        return next(CronSim(self.cron, start, reverse=True)).timestamp()

    def after(self, t: float) -> float:
        """The first due time > ``t``."""
        if self.every_ms is not None:
            return (math.floor(t * 1000) // self.every_ms + 1) * self.every_ms / 1000
        assert self.cron is not None
        from cronsim import CronSim

        return next(CronSim(self.cron, datetime.fromtimestamp(t, self.zone))).timestamp()


def _timing(every: float | None, cron: str | None, tz: str) -> _Timing:
    """Parse and check a schedule's timing; ``ConfigurationError`` saying what is wrong."""
    # zoneinfo and cronsim load with the first schedule: a worker without one never needs them
    # (issue 19's start time).
    from zoneinfo import ZoneInfo

    from cronsim import CronSim, CronSimError

    if (every is None) == (cron is None):
        raise ConfigurationError("a schedule takes exactly one of every= (seconds) or cron=")
    try:
        zone = ZoneInfo(tz)
    except (ValueError, KeyError, TypeError):  # ZoneInfoNotFoundError is a KeyError
        raise ConfigurationError(f"unknown time zone {tz!r} (use an IANA name)") from None
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int | float):
            raise ConfigurationError(f"every= takes seconds, got {type(every).__name__}")
        if not (math.isfinite(every) and every >= 0.001):
            raise ConfigurationError(f"every= must be at least 0.001 seconds, got {every!r}")
        return _Timing(round(every * 1000), None, zone)
    if not isinstance(cron, str):
        raise ConfigurationError(f"cron= takes a string, got {type(cron).__name__}")
    expr = _ALIASES.get(cron.strip().lower(), cron.strip())
    if len(expr.split()) != 5:
        raise ConfigurationError(
            f"bad cron expression {cron!r}: expected five fields "
            "(minute hour day-of-month month day-of-week) or an alias like @daily"
        )
    try:
        CronSim(expr, datetime.now(zone))
    except CronSimError as exc:
        raise ConfigurationError(f"bad cron expression {cron!r}: {exc}") from None
    return _Timing(None, expr, zone)


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A task run on a schedule (build with ``app.periodic`` or ``load_schedules``)."""

    name: str
    task: str
    every: float | None = None
    cron: str | None = None
    tz: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    missed: Missed = "skip"
    timing: _Timing = field(repr=False, compare=False)

    def claim_key(self, due: float) -> str:
        """The broker claim (and job id) of the run due at ``due``."""
        return f"schedule:{self.name}:{round(due * 1000)}"

    def claim_ttl(self, due: float) -> float:
        """How long a run's claim is kept: past the next run, so no late scheduler retakes it."""
        return 2 * (self.timing.after(due) - due) + 60.0


class ScheduleBook(Protocol):
    """Where schedules are kept (an ``App`` is one): the ``tasks`` they run, by name, and the
    ``schedules`` themselves, by name."""

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]: ...
    @property
    def schedules(self) -> MutableMapping[str, Schedule]: ...


class SchedulerHost(ScheduleBook, Protocol):
    """What a ``Scheduler`` runs on (an ``App`` is one): a ``ScheduleBook`` and the ``broker``
    its claims go to."""

    @property
    def broker(self) -> Broker: ...


def _task(tasks: Mapping[str, Task[Any, Any]], name: str) -> Task[Any, Any]:
    try:
        return tasks[name]
    except KeyError:
        raise UnknownTaskError(name) from None


def add_schedule(
    book: ScheduleBook,
    task_name: str,
    *,
    name: str | None = None,
    every: float | None = None,
    cron: str | None = None,
    tz: str = "UTC",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    missed: Missed = "skip",
) -> Schedule:
    """Check and add a schedule of registered task ``task_name`` to ``book.schedules``.

    Raises ``ConfigurationError`` (bad timing, unknown task, duplicate name, bad missed policy,
    arguments that do not fit the task or cannot be encoded), naming the schedule."""
    label = name or task_name
    try:
        timing = _timing(every, cron, tz)
        if missed not in ("skip", "once"):
            raise ConfigurationError(f"missed= must be 'skip' or 'once', got {missed!r}")
        if isinstance(args, str | bytes):  # a sequence too: args="ab" was two arguments
            raise ConfigurationError(f"args= must be a list or tuple, got the string {args!r}")
        task = _task(book.tasks, task_name)
        task.options(queue=queue).prepare(*args, **dict(kwargs or {}))
    except UnknownTaskError:
        raise ConfigurationError(f"schedule {label!r}: unknown task {task_name!r}") from None
    except (ConfigurationError, TypeError, ValueError, SerializationError) as exc:
        raise ConfigurationError(f"schedule {label!r}: {exc}") from None
    if label in book.schedules:
        raise ConfigurationError(f"a schedule named {label!r} is already registered")
    sched = Schedule(
        name=label, task=task_name, every=every, cron=cron, tz=tz, args=tuple(args),
        kwargs=dict(kwargs or {}), queue=queue, missed=missed, timing=timing,
    )  # fmt: skip
    book.schedules[label] = sched
    return sched


def periodic(book: ScheduleBook, **options: Any) -> Callable[[Task[P, R]], Task[P, R]]:
    """``app.periodic``: the timing is checked now, the rest when the decorator gets the task."""
    _timing(options.get("every"), options.get("cron"), options.get("tz", "UTC"))

    def attach(task: Task[P, R]) -> Task[P, R]:
        from taskit.task import Task

        if not isinstance(task, Task):
            raise TypeError(
                "@app.periodic goes above @app.task (it schedules a registered task), "
                f"got {type(task).__name__}"
            )
        add_schedule(book, task.name, **options)
        return task

    return attach


class _Entry(msgspec.Struct, forbid_unknown_fields=True):
    task: str
    name: str | None = None
    every: float | None = None
    cron: str | None = None
    tz: str = "UTC"
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    queue: str | None = None
    missed: Literal["skip", "once"] = "skip"


class _File(msgspec.Struct, forbid_unknown_fields=True):
    schedules: list[_Entry]


def load_schedules(book: ScheduleBook, path: str | Path) -> list[Schedule]:
    """Add the schedules listed in a TOML (``[[schedules]]`` tables) or JSON file (a list, or
    ``{"schedules": [...]}``) to ``book`` (an App), all or none. Each entry has ``task``,
    ``every`` or ``cron``, and optionally ``name``, ``tz``, ``args``, ``kwargs``, ``queue``,
    ``missed``.
    Raises ``ConfigurationError`` naming the file, the entry and the problem."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read schedules from {path}: {exc}") from None
    return _add_all(book, text, str(path), toml=path.suffix == ".toml")


def load_schedules_json(
    book: ScheduleBook, text: str, source: str = "TASKIT_SCHEDULE_JSON"
) -> list[Schedule]:
    """``load_schedules`` for JSON text instead of a file (the ``schedule_json`` setting,
    ``TASKIT_SCHEDULE_JSON``): the same format and the same errors, naming ``source``."""
    return _add_all(book, text, source, toml=False)


def _toml(text: str) -> Any:
    """``tomllib.loads``, imported only for a TOML file; its ``TOMLDecodeError`` is a
    ``ValueError``."""
    import tomllib

    return tomllib.loads(text)


def _add_all(book: ScheduleBook, text: str, source: str, *, toml: bool) -> list[Schedule]:
    """Parse ``text`` as a schedules file and add every entry to ``book``, all or none."""
    try:
        data: Any = _toml(text) if toml else msgspec.json.decode(text)
        if isinstance(data, list):
            data = {"schedules": data}
        entries = msgspec.convert(data, _File).schedules
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:  # ValueError: TOML
        raise ConfigurationError(f"{source}: not a valid schedules file: {exc}") from None
    added: list[Schedule] = []
    try:
        for i, entry in enumerate(entries, 1):
            options = {f: getattr(entry, f) for f in entry.__struct_fields__ if f != "task"}
            try:
                added.append(add_schedule(book, entry.task, **options))
            except ConfigurationError as exc:
                raise ConfigurationError(f"{source}: entry {i}: {exc}") from None
    except ConfigurationError:
        for sched in added:
            del book.schedules[sched.name]
        raise
    return added


class Scheduler:
    """Enqueues the due runs of ``host.schedules`` (or of ``schedules``) on ``clock`` (default
    the system clock; give the memory broker's ``FakeClock`` in tests and call ``tick``).
    ``host`` (an App) is read once, here: its broker takes the claims, its tasks the runs."""

    def __init__(
        self,
        host: SchedulerHost,
        *,
        schedules: Sequence[Schedule] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.broker = host.broker
        self.tasks = host.tasks
        self.schedules = list(host.schedules.values() if schedules is None else schedules)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._cursor: dict[str, float] = {}  # schedule name -> runs up to here are dealt with
        # Claims won here whose enqueue failed (Redis full, an outage): the run is still ours to
        # enqueue on the next tick, not "taken by another scheduler".
        self._won: set[str] = set()
        self._outage = Outage("scheduler", log)
        self._retry_in = 0.0  # after a tick that failed: seconds to wait (backoff)

    def start(self) -> None:
        """Place each schedule's cursor by its missed-runs policy (``tick`` does it if needed)."""
        now = self.clock.time()
        for s in self.schedules:
            self._cursor[s.name] = s.timing.latest(now) - 0.001 if s.missed == "once" else now

    async def tick(self) -> list[Job]:
        """Enqueue each schedule's latest due run not dealt with yet (if this process wins its
        claim); return the jobs enqueued here. Broker errors are logged (once per outage) and
        retried next tick; ``run`` waits a backoff before that tick."""
        if not self._cursor:
            self.start()
        now = self.clock.time()
        jobs: list[Job] = []
        failed = False
        for s in self.schedules:
            due = s.timing.latest(now)
            if due <= self._cursor[s.name]:
                continue
            try:
                job = await self._fire(s, due)
            except (TaskitError, OSError) as exc:
                if not failed:  # one failure per tick: the backoff grows per tick, not per run
                    what = f"schedule {s.name}: run due {_iso(due)} not enqueued yet"
                    self._retry_in = self._outage.failed(exc, what)
                failed = True
                continue
            self._cursor[s.name] = due
            if job is not None:
                jobs.append(job)
        if not failed:
            self._outage.recovered()
            self._retry_in = 0.0
        return jobs

    async def _fire(self, s: Schedule, due: float) -> Job | None:
        key = s.claim_key(due)
        if key not in self._won and not await self.broker.claim(key, s.claim_ttl(due)):
            log.debug("schedule %s: run due %s taken by another scheduler", s.name, _iso(due))
            return None
        self._won.add(key)
        task = _task(self.tasks, s.task)
        job = await task.options(
            queue=s.queue, job_id=key, created_by=f"scheduler:{s.name}",
            metadata={"schedule": s.name, "due_at": _iso(due)},
        ).enqueue(*s.args, **s.kwargs)  # fmt: skip
        self._won.discard(key)
        log.info(
            "schedule %s: enqueued job %s (%s) due %s", s.name, job.id, s.task, _iso(due),
            extra={"job_id": job.id, "task": s.task, "queue": job.queue, "schedule": s.name},
        )  # fmt: skip
        return job

    def next_due(self) -> float | None:
        """The earliest due time still to come, or None without schedules."""
        if not self._cursor:
            self.start()
        times = [s.timing.after(self._cursor[s.name]) for s in self.schedules]
        return min(times, default=None)

    async def run(self) -> None:
        """Tick whenever a run falls due, until cancelled."""
        names = ", ".join(f"{s.name} ({s.cron or f'every {s.every} s'})" for s in self.schedules)
        log.info("scheduler starting: %s", names or "no schedules")
        self.start()
        while True:
            await self.tick()
            if self._retry_in:  # the broker failed: the missed run is due at once, so back off
                await anyio.sleep(self._retry_in)
                continue
            upcoming = self.next_due()
            nap = MAX_NAP if upcoming is None else upcoming - self.clock.time()
            await anyio.sleep(min(max(nap, 0.0), MAX_NAP))


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
