"""The SQLite kind of the broker conformance suite: which modules it runs, and the tests of
those modules it leaves out, to shrink to nothing before issue 18 is resolved.

``SqliteBroker`` (``taskit.broker.sqlite``) runs every conformance module of the contract
(``MODULES``; the shards module is the sharded broker's own). ``EXCLUDED`` would name, as
``module::test``, a test of those modules that uses a feature not built yet: the sqlite kind is
not generated for it at all (never a skip). It is empty.
"""

from __future__ import annotations

__all__ = ["EXCLUDED", "MODULES", "runs_on_sqlite"]

#: The conformance modules the sqlite kind runs.
MODULES = frozenset(
    {
        "test_conformance_admin",
        "test_conformance_browse",
        "test_conformance_browse_ops",
        "test_conformance_dedup",
        "test_conformance_enqueue",
        "test_conformance_fair",
        "test_conformance_failures",
        "test_conformance_leases",
        "test_conformance_limits",
        "test_conformance_once",
        "test_conformance_ops",
        "test_conformance_outcomes",
        "test_conformance_pause",
        "test_conformance_progress",
        "test_conformance_reserve",
        "test_conformance_result_ttl",
        "test_conformance_settle_reserve",
        "test_conformance_streams",
        "test_conformance_workflows",
        "test_conformance_workflows_end",
    }
)

#: ``module::test`` -> the feature not built yet that it uses: empty, every feature is built.
EXCLUDED: dict[str, str] = {}


def runs_on_sqlite(module: str, test: str) -> bool:
    """Whether the sqlite kind runs test ``test`` of conformance module ``module``."""
    return module in MODULES and f"{module}::{test}" not in EXCLUDED
