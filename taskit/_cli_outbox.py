"""The outbox relay that ``taskit worker ... --outbox URL`` and ``taskit outbox-relay`` run.

SQLAlchemy is imported only here and only when asked for, so the CLI works without the
``outbox`` extra until an outbox is named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from taskit.app import App

if TYPE_CHECKING:
    from taskit.outbox import Relay

__all__ = ["build_relay"]


def build_relay(app: App, url: str, table: str, batch: int = 100) -> Relay:
    """A relay of ``table`` in the database at ``url`` into ``app``'s broker; a
    ``ClickException`` (one line, no password) for a missing extra, driver or bad URL."""
    try:
        from sqlalchemy import create_engine
        from sqlalchemy.exc import ArgumentError

        from taskit.outbox import Outbox, Relay
    except ImportError as exc:
        raise click.ClickException(
            f"the outbox needs SQLAlchemy: pip install 'taskit[outbox]' ({exc})"
        ) from None
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise click.ClickException(f"outbox database URL: {exc}") from None
    return Relay(engine, Outbox(name=table), app.producer, batch=batch)
