"""What more than one ``taskit`` command uses: the number types of its options, and the refusal
of an in-process broker. Kept apart from the admin commands so that ``taskit worker`` loads
neither them nor what they import (issue 19's start time).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from taskit._urls import parse_broker_url, redact_url
from taskit.config import MAX_SECONDS

if TYPE_CHECKING:
    from taskit.app import App

__all__ = ["Count", "NotShared", "Seconds", "how_to_share", "refuse_in_process"]


class NotShared(click.ClickException):
    """The App's broker lives in one process, so a command run as its own process cannot work."""

    exit_code = 2


def refuse_in_process(app: App, command: str) -> None:
    """Raise ``NotShared`` (one line, exit 2) when ``app``'s broker is in-process (``memory://``):
    a command that runs as its own process would see only its own empty broker, and a job it
    enqueued would vanish with it, so saying nothing would be a lie."""
    if not app.broker.in_process:
        return
    raise NotShared(
        f"{command} cannot work with the in-process memory:// broker: its jobs live inside one "
        "process, so this command would see only its own empty broker, and a job it enqueued "
        f"would be lost when it exits. {how_to_share(app)}, and run the workers with the same "
        "setting."
    )


def how_to_share(app: App) -> str:
    """How to give ``app`` (on an in-process broker) a shared one. The memory broker was chosen
    (an App that named none gets the commands' SQLite file): by its settings
    (``TASKIT_BROKER_URL=memory://``), or by its code, which wins over the variable: telling the
    user to set the variable then would send them round in circles."""
    named = app.settings.broker_url
    if named is not None and parse_broker_url(named).scheme == "memory":
        return (
            "TASKIT_BROKER_URL (or the App's settings) names memory://: unset it (the taskit "
            "commands then share the SQLite file ./.taskit/jobs.db), or name a shared broker, "
            "e.g. export TASKIT_BROKER_URL=sqlite:////srv/app/jobs.db or "
            "redis://127.0.0.1:6379/0"
        )
    variable = "TASKIT_BROKER_URL" if named is None else f"TASKIT_BROKER_URL={redact_url(named)}"
    return (
        f"The App's code gives it the memory broker ({app.broker_url}), which overrides "
        f"{variable}: build it as App() to use the variable or, with none set, the commands' "
        "SQLite file ./.taskit/jobs.db (a URL or broker given to App(...) wins over both)"
    )


def _plain(value: Any) -> bool:
    """Whether a command-line number is written as an operator means it: ASCII, no '_' (int()
    and float() also read '1_000' and non-ASCII digits)."""
    return not isinstance(value, str) or (value.isascii() and "_" not in value)


class Count(click.IntRange):
    """A whole number in a range, written in plain ASCII digits."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not _plain(value):
            self.fail(f"{value!r} is not a whole number in ASCII digits", param, ctx)
        return super().convert(value, param, ctx)


class Seconds(click.FloatRange):
    """A delay in seconds: a finite number from 0 to ``MAX_SECONDS`` (ten years); ``nan``,
    ``inf`` and the like are a clear usage error, never a traceback."""

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(0, MAX_SECONDS)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            if not _plain(value):
                raise ValueError(value)
            float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):  # a range lets NaN through (it compares false)
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return seconds
