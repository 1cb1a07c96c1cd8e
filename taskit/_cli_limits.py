"""The limit commands of the ``taskit`` CLI (flow control; flow control: "Limits"):

    taskit limits APP                        every limit: live, declared, running and waiting keys
    taskit limit set APP NAME --concurrency 5 --rate 100 --per 60 --burst 100
    taskit limit reset APP NAME              the App's declared definition again
    taskit limit delete APP NAME             no definition: its jobs run unlimited

A change is live at once for every worker: the broker holds the definitions and checks them at
each reserve; raising a concurrency or deleting a limit lets the jobs held back for it go."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from taskit._cli_admin import _load, echo_json, echo_table, run
from taskit._cli_options import Count
from taskit._limit_report import (
    LIMIT_HEADERS,
    LimitReport,
    describe,
    limit_reports,
    limit_rows,
)
from taskit.app import App
from taskit.config import MAX_COUNT, MAX_SECONDS
from taskit.limits import LimitSpec, check_limit_name

__all__ = ["limit", "limits"]

T = TypeVar("T")

_APP = click.argument("app_path", metavar="MODULE:ATTR")
_NAME = click.argument("name")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _run(app: App, fn: Callable[[], Awaitable[T]]) -> T:
    """``run``, with a broker that does not store limits said in one line (exit 1)."""
    try:
        return run(app, fn)
    except NotImplementedError:
        raise click.ClickException(
            f"the broker {type(app.broker).__name__} does not store limits"
        ) from None


def _name(value: str) -> str:
    try:
        return check_limit_name(value)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None


@click.command("limits")
@_APP
@click.option("--top", default=10, show_default=True, type=Count(1, 1000), help="Keys per limit.")
@_JSON
def limits(app_path: str, top: int, as_json: bool) -> None:
    """Every limit: its live definition (the enforced one), the App's declared one where it
    differs and where it comes from (code or config), and its busiest keys, running and
    waiting."""
    app = _load(app_path)
    reports = _run(app, lambda: limit_reports(app, top=top))
    if as_json:
        echo_json({"limits": [_json(r) for r in reports]})
        return
    echo_table(LIMIT_HEADERS, limit_rows(reports))
    if not reports:
        click.echo("(no limit)")


def _json(report: LimitReport) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(report)
    data["differs"] = report.differs
    return data


@click.group("limit")
def limit() -> None:
    """Change a limit's live definition."""


@limit.command("set")
@_APP
@_NAME
@click.option("--concurrency", type=Count(0, MAX_COUNT), help="Running per key (0: paused).")
@click.option("--rate", type=Count(1, MAX_COUNT), help="Starts per --per seconds per key.")
@click.option("--per", type=click.FloatRange(0, MAX_SECONDS, min_open=True), help="Rate period, s.")
@click.option("--burst", type=Count(1, MAX_COUNT), help="Starts at once after idling (def.: rate).")
@click.option("--unlimited", type=click.Choice(["concurrency", "rate"]), multiple=True,
              help="Drop this part of the definition.")  # fmt: skip
def limit_set(
    app_path: str, name: str, concurrency: int | None, rate: int | None, per: float | None,
    burst: int | None, unlimited: tuple[str, ...],
) -> None:  # fmt: skip
    """Change limit NAME's live definition, for every worker at once: the options given replace
    those parts of the live definition (or of the declared one, when the broker has none);
    ``--unlimited rate`` drops a part."""
    app = _load(app_path)
    name = _name(name)

    async def change() -> LimitSpec:
        base = (await app.broker.limit_specs()).get(name) or app.limits.get(name)
        spec = _changed(base, concurrency, rate, per, burst, unlimited)
        await app.broker.set_limits({name: spec})
        return spec

    click.echo(f"limit {name}: {describe(_run(app, change))}")


def _changed(
    base: LimitSpec | None, concurrency: int | None, rate: int | None, per: float | None,
    burst: int | None, unlimited: tuple[str, ...],
) -> LimitSpec:  # fmt: skip
    """``base`` with the given parts replaced; ``UsageError`` for a definition that is not one."""
    values: dict[str, Any] = msgspec.structs.asdict(base) if base is not None else {}
    given = {"concurrency": concurrency, "rate": rate, "per": per, "burst": burst}
    values.update({k: v for k, v in given.items() if v is not None})
    for part in unlimited:
        values[part] = None
        if part == "rate":
            values["burst"] = None
    try:
        return LimitSpec(**values)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


@limit.command("reset")
@_APP
@_NAME
def limit_reset(app_path: str, name: str) -> None:
    """Write limit NAME's declared definition (the App's code, or TASKIT_LIMITS_JSON, which
    wins) as the live one again."""
    app = _load(app_path)
    name = _name(name)
    spec = app.limits.get(name)
    if spec is None:
        raise click.ClickException(
            f"limit {name!r} is declared neither by the App's code nor by TASKIT_LIMITS_JSON: "
            "nothing to reset it to (taskit limit set or delete)"
        )
    _run(app, lambda: app.broker.set_limits({name: spec}))
    click.echo(f"limit {name}: {describe(spec)} (from {app.limits.origin(name)})")


@limit.command("delete")
@_APP
@_NAME
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def limit_delete(app_path: str, name: str, yes: bool) -> None:
    """Delete limit NAME's live definition: its jobs run unlimited (the waiting ones go to
    their queues), until a worker of an App that declares it starts and writes it again."""
    app = _load(app_path)
    name = _name(name)
    if not yes:
        click.confirm(f"Delete limit {name!r} (its jobs then run unlimited)?", abort=True)
    _run(app, lambda: app.broker.set_limits({name: None}))
    again = " (declared by the App: a worker that starts writes it again)"
    note = again if name in app.limits else ""
    click.echo(f"limit {name}: deleted{note}")
