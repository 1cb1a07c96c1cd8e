"""``taskit dashboard MODULE:ATTR``: the web dashboard (``taskit.dashboard``) under uvicorn.

It takes the App as ``MODULE:ATTR`` like the admin commands, and refuses an in-process broker
(the dashboard would show its own empty broker). ``--basic-auth USER:PASSWORD`` (or
``TASKIT_DASHBOARD_BASIC_AUTH``, which keeps the password out of the process list) turns on
HTTP basic auth; ``--read-only`` turns off every action. The first Ctrl-C (SIGINT/SIGTERM) ends
the live streams of open pages at once, so the server stops without waiting for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from taskit._cli_load import load_app
from taskit._cli_options import Count, refuse_in_process

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

__all__ = ["basic_auth_option", "dashboard"]

#: The environment variable ``--basic-auth`` falls back to.
BASIC_AUTH_ENV = "TASKIT_DASHBOARD_BASIC_AUTH"
#: Seconds uvicorn waits for open requests at a stop before it cancels them (a backstop: the
#: live streams end on their own within a moment).
_GRACE = 3


def basic_auth_option(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> tuple[str, str] | None:
    """``--basic-auth USER:PASSWORD`` as a pair; a usage error naming the problem."""
    if value is None or value == "":
        return None
    user, colon, password = value.partition(":")
    if not colon or not user or not password:
        raise click.BadParameter("expected USER:PASSWORD, both non-empty", ctx, param)
    return user, password


@click.command()
@click.argument("app_path", metavar="MODULE:ATTR")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=Count(1, 65535), default=8080, show_default=True)
@click.option("--read-only", is_flag=True, help="Show everything, change nothing.")
@click.option(
    "--basic-auth",
    metavar="USER:PASSWORD",
    envvar=BASIC_AUTH_ENV,
    callback=basic_auth_option,
    help=f"Require HTTP basic auth (also ${BASIC_AUTH_ENV}).",
)
@click.option("--title", default="taskit", show_default=True, help="The pages' title.")
def dashboard(
    app_path: str,
    host: str,
    port: int,
    read_only: bool,
    basic_auth: tuple[str, str] | None,
    title: str,
) -> None:
    """Serve the web dashboard of the App's broker: queues, jobs, dead letters, workers,
    schedules, limits, workflows and progress, live. Needs taskit[dashboard]."""
    try:
        import uvicorn

        from taskit.dashboard import dashboard as make_dashboard
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra: pip install 'taskit[dashboard]' ({exc})"
        ) from None
    app = load_app(app_path)
    refuse_in_process(app, click.get_current_context().command_path)
    web = make_dashboard(app, read_only=read_only, basic_auth=basic_auth, title=title)
    shown = f"[{host}]" if ":" in host else host
    mode = " (read-only)" if read_only else ""
    click.echo(f"taskit dashboard{mode}: http://{shown}:{port}/  (Ctrl-C to stop)")
    config = uvicorn.Config(
        web, host=host, port=port, log_level="info", timeout_graceful_shutdown=_GRACE,
        proxy_headers=False,
    )  # fmt: skip
    _server(config, web).run()


def _server(config: uvicorn.Config, web: Starlette) -> uvicorn.Server:
    """A uvicorn server that, when told to stop, also ends the dashboard's live streams."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            web.state.dashboard.stopping = True
            super().handle_exit(sig, frame)

    return Server(config)
