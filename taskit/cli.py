"""The ``taskit`` command. The only module that configures logging.

taskit worker MODULE:ATTR [--queues a,b] [--concurrency N] [--prefetch N] [--burst] [--scheduler]
                         [--schedules FILE] [--metrics-port N] [--metrics-prefix P]
                         [--log-level L] [--log-format F] [--outbox URL [--outbox-table T]]
taskit scheduler MODULE:ATTR [--schedules FILE]    taskit check MODULE:ATTR
taskit outbox-relay MODULE:ATTR --db URL [--table T] [--batch N]
taskit info | job | dlq list/requeue/purge | enqueue | cancel | purge  (see taskit._cli_admin)
taskit pause | resume (taskit._cli_flow)    taskit limits | limit (taskit._cli_limits)
taskit workflow MODULE:ATTR ID [--json] [--cancel]   (see taskit._cli_workflow)
taskit dashboard (taskit._cli_dashboard)    each loaded only when it runs (``_ELSEWHERE``)
taskit --version
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import click

from taskit._cli_load import load_app
from taskit._cli_options import Count, how_to_share, refuse_in_process
from taskit._cli_outbox import build_relay
from taskit._logline import STANDARD, TextFormatter
from taskit.app import App
from taskit.config import MAX_COUNT
from taskit.errors import BrokerAuthenticationError, BrokerError, ConfigurationError
from taskit.presence import live_workers
from taskit.scheduler import Scheduler, load_schedules, load_schedules_json
from taskit.worker import Worker

if TYPE_CHECKING:
    from taskit.metrics import Metrics
    from taskit.outbox import Relay

__all__ = ["load_app", "main"]


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the extras, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update((k, v) for k, v in record.__dict__.items() if k not in STANDARD)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def _configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _event_loop(choice: str) -> tuple[str, dict[str, Any]]:
    """anyio backend and options for ``--loop``."""
    if choice == "trio":
        return "trio", {}
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise click.UsageError("uvloop is not installed: pip install 'taskit[fast]'")
    return "asyncio", {"use_uvloop": installed and choice in ("auto", "uvloop")}


_LOG_LEVEL = click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
_LOG_FORMAT = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object a line, for log shippers.",
)


def _print_version(ctx: click.Context) -> None:
    import taskit  # the version is looked up only when asked for (taskit.__getattr__)

    click.echo(f"taskit, version {taskit.__version__}")
    ctx.exit()


#: The commands defined in other modules: name -> the module defining it under that name. Each
#: module loads when its command runs (``taskit --help`` loads them all), so ``taskit worker``
#: does not pay for the admin, limit, workflow and dashboard commands and what they import
#: (issue 19's start time).
_ELSEWHERE: dict[str, str] = {
    **dict.fromkeys(("info", "job", "dlq", "enqueue", "cancel", "purge"), "taskit._cli_admin"),
    **dict.fromkeys(("pause", "resume"), "taskit._cli_flow"),
    **dict.fromkeys(("limits", "limit"), "taskit._cli_limits"),
    "workflow": "taskit._cli_workflow",
    "dashboard": "taskit._cli_dashboard",
}


class _Commands(click.Group):
    """The ``taskit`` group: its own commands, and those of ``_ELSEWHERE`` loaded on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_ELSEWHERE})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in _ELSEWHERE:
            return command
        found = getattr(importlib.import_module(_ELSEWHERE[cmd_name]), cmd_name)
        if not isinstance(found, click.Command) or found.name != cmd_name:
            raise RuntimeError(f"{_ELSEWHERE[cmd_name]}.{cmd_name} is not the {cmd_name} command")
        return found


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    "-V",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
    help="Show the version and exit.",
)
def main() -> None:
    """taskit: background tasks for Python."""


@main.command()
@click.argument("app_path", metavar="MODULE:ATTR")
@click.option("--queues", "-q", help="Comma-separated queues, most preferred first.")
@click.option("--concurrency", "-c", type=Count(1, MAX_COUNT), help="Jobs run at once.")
@click.option(
    "--prefetch", type=Count(0, MAX_COUNT),
    help="Reserved jobs held waiting beyond idle runners (default: TASKIT_PREFETCH, else 0).",
)  # fmt: skip
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@_LOG_LEVEL
@_LOG_FORMAT
@click.option("--scheduler", is_flag=True, help="Also enqueue the App's periodic schedules.")
@click.option("--schedules", type=click.Path(dir_okay=False), help="Schedules file (TOML/JSON).")
@click.option("--metrics-port", type=Count(0, 65535), help="Serve Prometheus metrics.")
@click.option(
    "--metrics-prefix",
    help="First part of every metric name (default: TASKIT_METRICS_PREFIX, else taskit).",
)
@click.option(
    "--loop",
    type=click.Choice(["auto", "asyncio", "uvloop", "trio"]),
    default="auto",
    show_default=True,
    help="Event loop; auto: uvloop when installed (taskit[fast]), else asyncio.",
)
@click.option(
    "--outbox", "outbox_url", metavar="URL",
    help="Also relay this database's outbox (taskit.outbox) into the broker: a SQLAlchemy URL.",
)  # fmt: skip
@click.option("--outbox-table", default="taskit_outbox", show_default=True, help="With --outbox.")
def worker(
    app_path: str, queues: str | None, concurrency: int | None, prefetch: int | None,
    burst: bool, log_level: str,
    log_format: str, scheduler: bool, schedules: str | None, metrics_port: int | None,
    metrics_prefix: str | None, loop: str, outbox_url: str | None, outbox_table: str,
) -> None:  # fmt: skip
    """Run a worker for the App at MODULE:ATTR until SIGTERM/SIGINT (or, with --burst, until
    the queues are empty). A first signal stops gracefully, a second at once."""
    _configure_logging(log_level, log_format)
    app = load_app(app_path)
    _warn_in_process(app)
    _load_schedules(app, schedules)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    if queues is not None and not names:
        raise click.BadParameter(f"no queue names in {queues!r}", param_hint="--queues")
    the_worker = app.worker(queues=names, concurrency=concurrency, prefetch=prefetch)
    the_scheduler = Scheduler(app) if scheduler else None
    relay = build_relay(app, outbox_url, outbox_table) if outbox_url else None
    metrics = _metrics(app, metrics_port, metrics_prefix)
    try:
        backend, options = _event_loop(loop)
        if backend == "trio" and app.broker.asyncio_only:
            raise click.UsageError(
                f"--loop trio: {type(app.broker).__name__} runs on asyncio only "
                "(redis-py does not support trio); use --loop asyncio or uvloop"
            )
        shown = backend + ("+uvloop" if options.get("use_uvloop") else "")
        logging.getLogger(__name__).info("event loop: %s", shown)
        stopping = _Stopping()
        _run_until_stopped(
            stopping,
            functools.partial(
                _run_worker, the_worker, burst, the_scheduler, metrics, relay, stopping
            ),
            backend=backend,
            backend_options=options,
        )
        if the_worker.threads_running:
            # Abandoned handler threads (logged by the worker): Python's exit would join them,
            # holding a stopped worker for as long as a handler runs, maybe for ever.
            logging.shutdown()
            os._exit(0)
    except (BrokerAuthenticationError, ConfigurationError, BaseExceptionGroup) as exc:
        fatal = _fatal(exc)
        if fatal is None:
            raise
        # Bad credentials, or a broker that cannot run on this event loop, do not heal by
        # waiting: one clear line (no password), exit 1.
        hint = " (use --loop asyncio or uvloop)" if loop == "trio" else ""
        raise click.ClickException(
            f"{fatal}{hint if isinstance(fatal, ConfigurationError) else ''}"
        ) from None


def _warn_in_process(app: App) -> None:
    """A worker on the in-process memory:// broker is useful only for jobs its own process
    enqueues (``--scheduler``, or the App's code at import): say so at start, not never."""
    if app.broker.in_process:
        logging.getLogger(__name__).warning(
            "the broker is the in-process memory:// one: this worker runs only jobs enqueued "
            "inside this process (its --scheduler, or the App's own code); `taskit enqueue`, "
            "web apps and other processes cannot reach it. For a worker that takes jobs from "
            "other processes: %s",
            how_to_share(app),
        )


def _fatal(exc: BaseException) -> BrokerAuthenticationError | ConfigurationError | None:
    """The error in ``exc`` that stopped the worker for good (possibly nested in exception
    groups): refused credentials, or a configuration the broker cannot work with."""
    if isinstance(exc, BrokerAuthenticationError | ConfigurationError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _fatal(inner)
            if found is not None:
                return found
    return None


def _metrics(app: App, port: int | None, prefix: str | None) -> tuple[Metrics, Any] | None:
    """Metrics subscribed to the App's events (before its worker starts) and their server;
    ``prefix`` (None: the App's ``metrics_prefix`` setting) starts every metric name."""
    if port is None:
        if prefix is not None:
            raise click.UsageError("--metrics-prefix needs --metrics-port")
        return None
    from taskit.metrics import Metrics

    if prefix is not None:
        try:  # held to the setting's rule
            app.settings.replace(metrics_prefix=prefix)
        except ConfigurationError as exc:
            raise click.ClickException(f"--metrics-prefix {prefix}: {exc}") from None
    try:
        metrics = Metrics(app, prefix=prefix)
        return metrics, metrics.serve(port)
    except (ConfigurationError, OSError) as exc:
        raise click.ClickException(f"--metrics-port {port}: {exc}") from None


async def _run_worker(
    the_worker: Worker,
    burst: bool,
    scheduler: Scheduler | None,
    metrics: tuple[Metrics, Any] | None,
    relay: Relay | None = None,
    stopping: _Stopping | None = None,
) -> None:
    # Signals are taken here, not by the worker: the receiver closes (restoring the default
    # handlers) in this task, and stop signals are ignored right after, with no await between.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as services:
            services.start_soon(_relay, signals, the_worker)
            if metrics is not None:
                services.start_soon(metrics[0].refresh_forever)
            if scheduler is not None:
                services.start_soon(scheduler.run)
            if relay is not None:
                services.start_soon(relay.run)
            try:
                await the_worker.run(burst=burst)
            finally:
                services.cancel_scope.cancel()
                if metrics is not None:
                    from taskit.metrics import stop_serving

                    stop_serving(metrics[1])
        if stopping is not None:
            stopping.done = True
    _ignore_stop_signals()


async def _relay(signals: AsyncIterator[int], the_worker: Worker) -> None:
    async for signum in signals:
        the_worker.signalled(signum)


class _Stopping:
    """Whether a command has stopped and is closing its signal receiver. Closing restores
    Python's default SIGINT handler for a moment before ``_ignore_stop_signals``: a Ctrl-C in
    that moment raises ``KeyboardInterrupt`` out of ``anyio.run``, which is then the stop
    already under way, not a new one (``_run_until_stopped``)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


def _run_until_stopped(stopping: _Stopping, fn: Callable[[], Awaitable[None]], **run: Any) -> None:
    """``anyio.run(fn, **run)``, where a ``KeyboardInterrupt`` after ``stopping.done`` ends
    the command cleanly (exit status 0, no "Aborted!") instead of killing it."""
    try:
        anyio.run(fn, **run)
    except KeyboardInterrupt:
        _ignore_stop_signals()
        if not stopping.done:
            raise


def _ignore_stop_signals() -> None:
    """Stopped: the process only exits now. Without this, a second Ctrl-C or SIGTERM in the
    teardown killed it (status -15) or raised KeyboardInterrupt ("Aborted!", status 1)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def _load_schedules(app: App, path: str | None) -> None:
    """Add the schedules of ``path`` (``--schedules``) and of the ``schedule_json`` setting
    (``TASKIT_SCHEDULE_JSON``), each all or none."""
    try:
        if path is not None:
            load_schedules(app, path)
        if app.settings.schedule_json is not None:
            load_schedules_json(app, app.settings.schedule_json)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("app_path", metavar="MODULE:ATTR")
@click.option("--schedules", type=click.Path(dir_okay=False), help="Schedules file (TOML/JSON).")
@_LOG_LEVEL
@_LOG_FORMAT
def scheduler(app_path: str, schedules: str | None, log_level: str, log_format: str) -> None:
    """Enqueue the App's periodic schedules (and those of --schedules) until SIGTERM/SIGINT.
    Run as many as you like: each due run is enqueued once."""
    _configure_logging(log_level, log_format)
    app = load_app(app_path)
    # Runs enqueued into this process's memory broker would reach no worker.
    refuse_in_process(app, "taskit scheduler")
    _load_schedules(app, schedules)
    if not app.schedules:
        raise click.ClickException(
            f"{app_path} has no periodic schedules (and no --schedules or TASKIT_SCHEDULE_JSON)"
        )

    stopping = _Stopping()

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(Scheduler(app).run)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    logging.getLogger("taskit.scheduler").info("scheduler stopping")
                    break
                stopping.done = True
            _ignore_stop_signals()  # once the receiver is closed: closing restores the defaults
            tg.cancel_scope.cancel()

    _run_until_stopped(stopping, serve)


@main.command("outbox-relay")
@click.argument("app_path", metavar="MODULE:ATTR")
@click.option("--db", "url", required=True, metavar="URL", help="The database (SQLAlchemy URL).")
@click.option("--table", default="taskit_outbox", show_default=True, help="The outbox table.")
@click.option("--batch", default=100, show_default=True, type=Count(1, 10_000))
@_LOG_LEVEL
@_LOG_FORMAT
def outbox_relay(
    app_path: str, url: str, table: str, batch: int, log_level: str, log_format: str
) -> None:
    """Move the committed jobs of the database's outbox (taskit.outbox) into the App's broker,
    each exactly once, until SIGTERM/SIGINT. Run as many as you like."""
    _configure_logging(log_level, log_format)
    app = load_app(app_path)
    # Jobs relayed into this process's memory broker would reach no worker (and leave the table).
    refuse_in_process(app, "taskit outbox-relay")
    relay = build_relay(app, url, table, batch)

    stopping = _Stopping()

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    logging.getLogger("taskit.outbox").info("outbox relay stopping")
                    break
                stopping.done = True
            _ignore_stop_signals()
            tg.cancel_scope.cancel()

    _run_until_stopped(stopping, serve)


@main.command()
@click.argument("app_path", metavar="MODULE:ATTR")
@click.option("--min-workers", default=1, show_default=True, type=Count(0, MAX_COUNT))
def check(app_path: str, min_workers: int) -> None:
    """Liveness check: exit 0 when the broker answers and at least --min-workers workers are
    alive (saying how many shards the broker spreads each queue over); 1 when too few are; 2
    when the broker cannot be reached (or is the in-process memory:// one, which no other
    process can reach)."""
    from taskit._cli_admin import shards_phrase  # with the admin commands it belongs to

    app = load_app(app_path)
    refuse_in_process(app, "taskit check")

    async def probe() -> int:
        try:
            return len(await live_workers(app.broker))
        finally:
            await app.broker.close()

    try:
        alive = anyio.run(probe)
    except (BrokerError, OSError) as exc:
        click.echo(f"unhealthy: broker unreachable: {exc}", err=True)
        sys.exit(2)
    if alive < min_workers:
        click.echo(f"unhealthy: {alive} live worker(s), need {min_workers}", err=True)
        sys.exit(1)
    click.echo(f"ok: broker reachable ({shards_phrase(app)}), {alive} live worker(s)")


if __name__ == "__main__":  # pragma: no cover
    main()
