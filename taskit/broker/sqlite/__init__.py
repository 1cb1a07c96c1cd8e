"""The SQLite broker (issue 18): ``SqliteBroker``, a durable broker in one SQLite file for the
processes of one host.

State: the whole Broker contract: the core, with fair groups, limits, dedup windows, workflows
and browsing. Built by ``taskit.broker.from_url("sqlite:///jobs.db")`` (``taskit._urls``),
exported as ``taskit.broker.SqliteBroker``, and the ``taskit`` commands' default
(``taskit._cli_load``).

Inside: ``schema`` (the tables and their version), ``store`` (the connection thread: each call
all or none in a ``BEGIN IMMEDIATE`` transaction, calls queued together committed together),
``records`` (a row as a ``Job``), ``moves`` (the steps calls share), ``lifecycle`` and
``outcomes`` (a job's way through),
``fair`` (turns over groups), ``limits`` (slots, lines, rates), ``dedup`` (windows),
``workflows`` (waiting jobs, and the ends applied to them), ``admin``, ``browse`` (listings,
``promote``, ``forget``, ``stream_tail``), ``tally`` (the per-minute counts), ``coordination``,
``streams``, ``wake`` (wake-ups across processes) and ``broker`` (the class).
"""

from __future__ import annotations

from taskit.broker.sqlite.broker import SqliteBroker

__all__ = ["SqliteBroker"]
