"""The admin commands of the ``taskit`` CLI: look at queues, workers and jobs; replay or drop
dead letters; enqueue, cancel and purge by hand. Each takes the App as ``MODULE:ATTR`` first,
like ``taskit worker``; read commands print a table, or JSON with ``--json``."""

from __future__ import annotations

import contextlib
import json
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import click
import msgspec

from taskit._cli_load import load_app
from taskit._cli_options import Count, Seconds, refuse_in_process
from taskit._limit_report import LIMIT_HEADERS, LimitReport, limit_reports, limit_rows
from taskit.app import App
from taskit.broker.sharded import shard_count
from taskit.config import MAX_COUNT
from taskit.errors import BrokerError, SerializationError, UnknownTaskError
from taskit.job import Job, JobStatus, Progress
from taskit.presence import live_workers

__all__ = [
    "cancel",
    "dlq",
    "echo_json",
    "echo_table",
    "enqueue",
    "info",
    "job",
    "purge",
    "run",
    "shards_phrase",
]

T = TypeVar("T")

_APP = click.argument("app_path", metavar="MODULE:ATTR")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
_YES = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def _load(path: str) -> App:
    """The App at ``path``; refused (see ``refuse_in_process``) if its broker is in-process."""
    app = load_app(path)
    refuse_in_process(app, click.get_current_context().command_path)
    return app


def _queue_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A queue name given on the command line: None (not given) or non-empty, as everywhere
    else (a blank name matched no queue, and purge answered 'deleted 0')."""
    if value is not None and not value.strip():
        raise click.BadParameter(f"a queue name must be non-empty, got {value!r}")
    return value


def run(app: App, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` on a fresh event loop, close the broker, and turn broker errors into one line
    (exit 1)."""

    async def main() -> T:
        try:
            return await fn()
        finally:
            await app.broker.close()

    try:
        return anyio.run(main)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None


def echo_json(data: Any) -> None:
    click.echo(json.dumps(msgspec.to_builtins(data), indent=2, sort_keys=True))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def shards_phrase(app: App) -> str:
    """``"1 shard"``, ``"3 shards"``: how many shards ``app``'s broker spreads a queue over."""
    n = shard_count(app.broker)
    return f"{n} shard{'s' if n != 1 else ''}"


def _ago(when: datetime | None) -> str:
    if when is None:
        return ""
    seconds = (datetime.now(UTC) - when).total_seconds()
    return f"{seconds:.0f}s ago" if seconds < 120 else when.strftime("%Y-%m-%d %H:%M:%S")


# -- reading ------------------------------------------------------------------------------------
@click.command()
@_APP
@_JSON
def info(app_path: str, as_json: bool) -> None:
    """Queues (queued, scheduled, running, completed, failed, dead; on a sharded broker the sums
    over its shards), how many shards, live workers, and limits (their three busiest keys;
    ``taskit limits`` shows more)."""
    app = _load(app_path)

    Info = tuple[dict[str, Any], list[Any], frozenset[str], list[LimitReport] | None]

    async def read() -> Info:
        try:
            limits: list[LimitReport] | None = await limit_reports(app, top=3)
        except NotImplementedError:  # a broker that does not store limits
            limits = None
        paused = await app.broker.paused_queues()
        return await app.stats(), await live_workers(app.broker), paused, limits

    stats, workers, paused, limits = run(app, read)
    shards = shard_count(app.broker)
    if as_json:
        echo_json(
            {"queues": stats, "shards": shards, "workers": workers, "paused": sorted(paused),
             "limits": limits}
        )  # fmt: skip
        return
    fields = ("queued", "scheduled", "running", "completed", "failed", "dead")
    rows = [[q, *(getattr(s, f) for f in fields)] for q, s in stats.items()]
    echo_table(["QUEUE", *(f.upper() for f in fields)], rows)
    if paused:
        click.echo(f"paused: {', '.join(sorted(paused))}")
    click.echo(f"shards: {shards}")
    click.echo()
    echo_table(
        ["WORKER", "HOST", "PID", "QUEUES", "CONCURRENCY", "RUNNING", "DONE", "STARTED", "BEAT"],
        [
            [w.name, w.host, w.pid, ",".join(w.queues), w.concurrency, w.running, w.jobs_done,
             _ago(w.started_at), _ago(w.beat_at)]
            for w in workers
        ],
    )  # fmt: skip
    if not workers:
        click.echo("(no live worker)")
    if limits:
        click.echo()
        echo_table(LIMIT_HEADERS, limit_rows(limits))


@click.command()
@_APP
@click.argument("job_id")
@_JSON
def job(app_path: str, job_id: str, as_json: bool) -> None:
    """One job: status, attempts, timestamps, error and result. Exit 1 if there is none."""
    app = _load(app_path)
    found = run(app, lambda: app.get_job(job_id))
    if found is None:
        raise click.ClickException(f"no job {job_id!r} (never existed, or its record expired)")
    data = found.to_builtins()
    if as_json:
        echo_json(data)
        return
    for key in ("id", "task", "queue", "status", "attempts", "max_retries", "priority"):
        click.echo(f"{key + ':':<14}{data[key]}")
    for key in ("created_at", "scheduled_at", "started_at", "failed_at", "completed_at"):
        if data.get(key):
            click.echo(f"{key + ':':<14}{data[key]}")
    if found.result_ttl is not None:  # the job's own retention once finished (0: none)
        click.echo(f"{'result_ttl:':<14}{found.result_ttl:g} s")
    click.echo(f"{'args:':<14}{json.dumps(data['args'])}")
    click.echo(f"{'kwargs:':<14}{json.dumps(data['kwargs'])}")
    for key in ("created_by", "metadata", "error_type", "error"):
        if data.get(key):
            click.echo(f"{key + ':':<14}{data[key]}")
    if found.progress is not None:
        click.echo(f"{'progress:':<14}{_progress_line(found.progress)}")
    result = None if found.result is None else msgspec.to_builtins(found.result)
    trace = found.traceback or (result or {}).pop("traceback", None)
    if trace:
        click.echo("traceback:\n" + textwrap.indent(trace.rstrip("\n"), "  "))
    if result is not None:
        result.pop("traceback", None)  # shown above
        click.echo(f"{'result:':<14}{json.dumps(result)}")


def _progress_line(progress: Progress) -> str:
    """``40% copying files {"done": 4} (at 2024-05-01T12:30:04+00:00)``: the parts it has."""
    parts = [] if progress.fraction is None else [f"{progress.fraction:.0%}"]
    if progress.message:
        parts.append(progress.message)
    if progress.data:
        parts.append(json.dumps(msgspec.to_builtins(progress.data), sort_keys=True))
    return " ".join([*parts, f"(at {progress.updated_at.isoformat()})"])


# -- dead letters -------------------------------------------------------------------------------
@click.group()
def dlq() -> None:
    """Dead letters: list, requeue, purge."""


async def _dead(app: App, queue: str | None, limit: int) -> list[Job]:
    queues = [queue] if queue else list(await app.stats())
    found: list[Job] = []
    for q in queues:
        found += await app.broker.dead_letters(q, limit=limit)
    return found


@dlq.command("list")
@_APP
@click.option("--queue", "-q", callback=_queue_name, help="Only this queue (default: every queue).")
@click.option("--limit", default=100, show_default=True, type=Count(1, MAX_COUNT))
@_JSON
def dlq_list(app_path: str, queue: str | None, limit: int, as_json: bool) -> None:
    """Dead-lettered jobs, oldest first, with their last error."""
    app = _load(app_path)
    jobs = run(app, lambda: _dead(app, queue, limit))
    if as_json:
        echo_json([j.to_builtins() for j in jobs])
        return
    rows = [
        [j.id, j.queue, j.task, j.attempts, _ago(j.failed_at), (j.error or "")[:60]] for j in jobs
    ]
    echo_table(["ID", "QUEUE", "TASK", "ATTEMPTS", "FAILED", "ERROR"], rows)


@dlq.command("requeue")
@_APP
@click.argument("job_ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "every", is_flag=True, help="Every dead letter (of --queue, if given).")
@click.option("--queue", "-q", callback=_queue_name, help="With --all: only this queue.")
def dlq_requeue(app_path: str, job_ids: tuple[str, ...], every: bool, queue: str | None) -> None:
    """Make dead letters pending again (attempts reset), by ID or --all."""
    if bool(job_ids) == every:
        raise click.UsageError("give dead-letter IDs or --all (not both)")
    app = _load(app_path)

    async def requeue() -> int:
        if every:
            chosen = await _dead(app, queue, 1_000_000)
        else:
            chosen = [j for j in [await app.get_job(i) for i in job_ids] if j is not None]
            chosen = [j for j in chosen if j.status is JobStatus.DEAD_LETTER]
        total = 0
        for q in dict.fromkeys(j.queue for j in chosen):
            total += await app.requeue_dead(q, [j.id for j in chosen if j.queue == q])
        return total

    n = run(app, requeue)
    click.echo(f"requeued {n} job{'s' if n != 1 else ''}")
    if not every and n < len(job_ids):
        raise click.ClickException(f"{len(job_ids) - n} of the IDs are not dead letters")


@dlq.command("purge")
@_APP
@click.option("--queue", "-q", callback=_queue_name, help="Only this queue (default: every queue).")
@_YES
def dlq_purge(app_path: str, queue: str | None, yes: bool) -> None:
    """Delete dead letters for good."""
    app = _load(app_path)
    where = f"queue {queue!r}" if queue else "every queue"
    if not yes:
        click.confirm(f"Delete the dead letters of {where}?", abort=True)

    async def purge() -> int:
        queues = [queue] if queue else list(await app.stats())
        return sum([await app.broker.purge_dead(q) for q in queues])

    click.echo(f"deleted {run(app, purge)} dead letters")


# -- producing and removing ---------------------------------------------------------------------
def _json_arg(text: str, kind: type, option: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=option) from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=option)
    return value


@click.command()
@_APP
@click.argument("task_name", metavar="TASK")
@click.option("--args", "args_json", default="[]", help="Positional arguments, a JSON list.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments, a JSON object.")
@click.option("--delay", type=Seconds(), help="Seconds before it may run (0 to ten years).")
@click.option("--queue", "-q", callback=_queue_name, help="Queue (default: the task's).")
@_JSON
def enqueue(
    app_path: str, task_name: str, args_json: str, kwargs_json: str, delay: float | None,
    queue: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Enqueue registered task TASK. The JSON arguments are converted to the parameter types
    as a worker converts a payload (a list for a tuple, a string for a datetime), then checked
    as every enqueue is checked (even with the task's validate=False); nothing is enqueued if
    they do not fit."""
    args = _json_arg(args_json, list, "--args")
    kwargs = _json_arg(kwargs_json, dict, "--kwargs")
    app = _load(app_path)
    try:
        task = app.get_task(task_name)
        variant = task.options(queue=queue, created_by="taskit enqueue", validate=True)
        # JSON to the parameter types; values that do not convert are left for the check
        # below, which refuses them in the words of code's enqueue
        with contextlib.suppress(msgspec.ValidationError):
            args, kwargs = task.convert_arguments(args, kwargs, from_json=True)
        variant.prepare(*args, **kwargs)
    except UnknownTaskError:
        known = ", ".join(sorted(app.tasks)) or "none"
        raise click.ClickException(f"unknown task {task_name!r} (registered: {known})") from None
    except (TypeError, ValueError, SerializationError) as exc:
        reason = str(exc).removeprefix(f"task {task_name!r}: ")
        raise click.ClickException(f"arguments do not fit task {task_name!r}: {reason}") from None
    if delay:
        done = run(app, lambda: variant.schedule(delay, *args, **kwargs))
    else:
        done = run(app, lambda: variant.enqueue(*args, **kwargs))
    if as_json:
        echo_json(done.to_builtins())
    else:
        click.echo(done.id)


@click.command()
@_APP
@click.argument("job_id")
def cancel(app_path: str, job_id: str) -> None:
    """Cancel a waiting job, or ask a running one to stop. Exit 1 if it is finished or unknown."""
    app = _load(app_path)
    if not run(app, lambda: app.cancel(job_id)):
        raise click.ClickException(f"job {job_id!r} is finished or unknown: nothing to cancel")
    click.echo(f"cancelled {job_id}")


@click.command()
@_APP
@click.argument("queue", callback=_queue_name)
@_YES
def purge(app_path: str, queue: str, yes: bool) -> None:
    """Delete QUEUE's waiting jobs (pending, scheduled, retrying); running ones are left."""
    app = _load(app_path)
    if not yes:
        click.confirm(f"Delete every waiting job of queue {queue!r}?", abort=True)
    click.echo(f"deleted {run(app, lambda: app.broker.purge(queue))} waiting jobs")
