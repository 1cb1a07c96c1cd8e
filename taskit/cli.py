"""The ``taskit`` command. The only module that configures logging.

taskit worker MODULE:ATTR [--queues a,b] [--concurrency N] [--burst] [--log-level L]
taskit --version
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from typing import Any

import anyio
import click

from taskit import __version__
from taskit.app import App
from taskit.errors import BrokerAuthenticationError

__all__ = ["load_app", "main"]

# Attributes of a log record that are not extras passed by taskit's loggers.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class _Formatter(logging.Formatter):
    """``time level logger: message`` followed by ``key=value`` for each extra (job_id, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD]
        return f"{line} [{' '.join(extras)}]" if extras else line


def load_app(path: str) -> App:
    """Import ``MODULE:ATTR`` (from the current directory too) and return the App it names.

    Raises ``click.UsageError`` / ``click.ClickException`` with one line saying what is wrong.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise click.UsageError(f"expected MODULE:ATTR (e.g. myproject.tasks:app), got {path!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise click.ClickException(f"cannot import {module_name!r}: no such module") from None
        raise click.ClickException(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise click.ClickException(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise click.ClickException(f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, App):
        raise click.ClickException(f"{path!r} is a {type(obj).__name__}, not a taskit.App")
    return obj


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="taskit")
def main() -> None:
    """taskit: background tasks for Python."""


@main.command()
@click.argument("app_path", metavar="MODULE:ATTR")
@click.option("--queues", "-q", help="Comma-separated queues, most preferred first.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), help="Jobs run at once.")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def worker(
    app_path: str, queues: str | None, concurrency: int | None, burst: bool, log_level: str
) -> None:
    """Run a worker for the App at MODULE:ATTR until SIGTERM/SIGINT (or, with --burst, until
    the queues are empty). A first signal stops gracefully, a second at once."""
    _configure_logging(log_level)
    app = load_app(app_path)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    if queues is not None and not names:
        raise click.BadParameter(f"no queue names in {queues!r}", param_hint="--queues")
    the_worker = app.worker(queues=names, concurrency=concurrency)
    try:
        anyio.run(functools.partial(the_worker.run, burst=burst, handle_signals=True))
    except (BrokerAuthenticationError, BaseExceptionGroup) as exc:
        refused = _refusal(exc)
        if refused is None:
            raise
        # Bad credentials do not heal by waiting: one clear line (no password), exit 1.
        raise click.ClickException(str(refused)) from None


def _refusal(exc: BaseException) -> BrokerAuthenticationError | None:
    """The ``BrokerAuthenticationError`` in ``exc`` (possibly nested in exception groups)."""
    if isinstance(exc, BrokerAuthenticationError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _refusal(inner)
            if found is not None:
                return found
    return None


if __name__ == "__main__":  # pragma: no cover
    main()
