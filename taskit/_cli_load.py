"""Finding the App a command names (``MODULE:ATTR``), for ``taskit.cli`` and the admin commands
of ``taskit._cli_admin`` alike (both import it; it imports neither)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from taskit.app import App

__all__ = ["load_app"]


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
