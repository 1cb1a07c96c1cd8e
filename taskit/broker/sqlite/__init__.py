"""The SQLite broker (issue 18): ``SqliteBroker``, a durable broker in one SQLite file for the
processes of one host.

State: the core, with fair groups, limits, dedup windows and workflows; browsing follows.
Until it does, its methods raise ``NotImplementedError`` saying so. Not yet reachable by URL
(``sqlite://``) nor exported from ``taskit.broker``.

Inside: ``schema`` (the tables and their version), ``store`` (the connection: each call one
``BEGIN IMMEDIATE`` transaction, off the event loop), ``records`` (a row as a ``Job``),
``moves`` (the steps calls share), ``lifecycle`` and ``outcomes`` (a job's way through),
``fair`` (turns over groups), ``limits`` (slots, lines, rates), ``dedup`` (windows) and
``workflows`` (waiting jobs, and the ends applied to them),
``admin``, ``coordination``, ``streams``, ``wake`` (wake-ups across processes) and ``broker``
(the class).
"""

from __future__ import annotations

from taskit.broker.sqlite.broker import SqliteBroker

__all__ = ["SqliteBroker"]
