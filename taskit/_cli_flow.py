"""The flow-control commands of the ``taskit`` CLI: ``taskit pause APP QUEUE...`` and ``taskit
resume APP QUEUE...`` (``taskit info`` lists the paused queues). Like the admin commands, each
takes the App as ``MODULE:ATTR`` first and refuses an in-process broker."""

from __future__ import annotations

import click

from taskit._cli_admin import run
from taskit._cli_load import load_app
from taskit._cli_options import refuse_in_process

__all__ = ["pause", "resume"]


def _queues(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    blank = [name for name in value if not name.strip()]
    if blank:
        raise click.BadParameter(f"a queue name must be non-empty, got {blank[0]!r}")
    return value


@click.command()
@click.argument("app_path", metavar="MODULE:ATTR")
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...", callback=_queues)
def pause(app_path: str, queues: tuple[str, ...]) -> None:
    """Pause QUEUEs: no worker starts another of their jobs until they are resumed (running
    jobs finish; waiting ones wait, nothing is lost)."""
    app = load_app(app_path)
    refuse_in_process(app, click.get_current_context().command_path)

    async def pause_all() -> list[bool]:
        return [await app.pause(queue) for queue in queues]

    for queue, changed in zip(queues, run(app, pause_all), strict=True):
        click.echo(f"paused {queue}" if changed else f"{queue} was paused already")


@click.command()
@click.argument("app_path", metavar="MODULE:ATTR")
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...", callback=_queues)
def resume(app_path: str, queues: tuple[str, ...]) -> None:
    """Resume paused QUEUEs: waiting workers take their jobs at once."""
    app = load_app(app_path)
    refuse_in_process(app, click.get_current_context().command_path)

    async def resume_all() -> list[bool]:
        return [await app.resume(queue) for queue in queues]

    for queue, changed in zip(queues, run(app, resume_all), strict=True):
        click.echo(f"resumed {queue}" if changed else f"{queue} was not paused")
