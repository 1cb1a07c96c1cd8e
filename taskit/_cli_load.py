"""Finding the App a command names (``MODULE:ATTR``), for ``taskit.cli`` and the admin commands
of ``taskit._cli_admin`` alike (both import it; it imports neither).

It also gives the commands their default broker. An App whose code and settings named none
(``App.broker_is_default``) runs on ``memory://``, which no other process can reach; every
``taskit`` command runs as a process of its own, so there it gets the SQLite file
``DEFAULT_DATABASE`` instead, relative to the current directory (where ``MODULE`` is imported
from too), and says where on stderr. A worker and ``taskit enqueue`` started in one project
directory thus share a queue with nothing configured (docs/configuration.md, "The default
broker")."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from taskit.app import App

__all__ = ["DEFAULT_DATABASE", "load_app", "use_default_database"]

#: The SQLite file of the ``taskit`` commands when nothing names a broker, from the current
#: directory. Its directory is made on first use, with a ``.gitignore`` that ignores it all.
DEFAULT_DATABASE = os.path.join(".taskit", "jobs.db")


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
    use_default_database(obj)
    return obj


def use_default_database(app: App) -> None:
    """Give ``app`` the SQLite broker on ``DEFAULT_DATABASE`` if it fell back to ``memory://``
    (``App.broker_is_default``), and print the file's path on stderr; else change nothing.
    ``click.ClickException`` if the directory cannot be made."""
    if not app.broker_is_default:
        return
    path = os.path.abspath(DEFAULT_DATABASE)
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        ignore = os.path.join(directory, ".gitignore")
        if not os.path.exists(ignore):
            with open(ignore, "w", encoding="utf-8") as file:
                file.write("# made by taskit: its default job database (.taskit/jobs.db)\n*\n")
    except OSError as exc:
        raise click.ClickException(
            f"no broker is configured, and the default SQLite file's directory {directory} "
            f"cannot be made ({exc}): set TASKIT_BROKER_URL (sqlite:////path/jobs.db, "
            "redis://...)"
        ) from None
    from taskit.broker.sqlite import SqliteBroker  # imported when used: workers start sooner

    broker = SqliteBroker(path)
    broker.configure(app.settings)
    app.broker = broker
    app.broker_url = f"sqlite:///{DEFAULT_DATABASE}"
    app.broker_is_default = False
    click.echo(
        f"taskit: no broker configured (TASKIT_BROKER_URL): using the SQLite file {path}",
        err=True,
    )
