"""What the admin commands show about an App's limits (``taskit limits``, ``taskit info``): for
every limit the broker stores or the App declares, its live definition, the declared one and
where that comes from, and its busiest limit keys, running and waiting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from taskit.app import App
from taskit.limits import LimitSpec

__all__ = ["LIMIT_HEADERS", "LimitReport", "describe", "limit_reports", "limit_rows"]

#: The columns of ``limit_rows``.
LIMIT_HEADERS = ["LIMIT", "LIVE", "DECLARED (DIFFERS)", "FROM", "RUNNING", "WAITING"]


class LimitReport(msgspec.Struct, kw_only=True, frozen=True):
    """One limit as the admin commands show it. ``live``: the broker's definition, the one
    enforced (``None``: none stored, its jobs run unlimited); ``declared``: the App's (code, or
    ``TASKIT_LIMITS_JSON``: ``declared_from``), what ``taskit limit reset`` writes again;
    ``running`` / ``waiting``: the busiest limit keys and their counts."""

    name: str
    live: LimitSpec | None
    declared: LimitSpec | None
    declared_from: str | None
    running: Mapping[str, int]
    waiting: Mapping[str, int]

    @property
    def differs(self) -> bool:
        """Whether the live definition is not the declared one (both present)."""
        return self.declared is not None and self.live != self.declared


def describe(spec: LimitSpec | None) -> str:
    """A definition in words: ``concurrency 2, rate 100/60s burst 100``; ``-`` for none."""
    if spec is None:
        return "-"
    parts = []
    if spec.concurrency is not None:
        paused = " (paused)" if spec.concurrency == 0 else ""
        parts.append(f"concurrency {spec.concurrency}{paused}")
    if spec.rate is not None:
        rate = f"rate {spec.rate}/{spec.per:g}s"
        parts.append(rate if spec.burst is None else f"{rate} burst {spec.burst}")
    return ", ".join(parts)


async def limit_reports(app: App, *, top: int = 10) -> list[LimitReport]:
    """A report of each limit the broker stores or ``app`` declares, by name. Raises
    ``NotImplementedError`` for a broker that does not store limits."""
    live = await app.broker.limit_specs()
    names = sorted(live.keys() | app.limits.keys())
    reports = []
    for name in names:
        usage = await app.broker.limit_usage(name, top=top)
        report = LimitReport(
            name=name, live=usage.spec, declared=app.limits.get(name),
            declared_from=app.limits.origin(name), running=usage.running, waiting=usage.waiting,
        )  # fmt: skip
        reports.append(report)
    return reports


def limit_rows(reports: list[LimitReport]) -> list[list[Any]]:
    """Table rows of ``reports`` (``LIMIT_HEADERS``): the declared definition shown only where
    it differs from the live one; keys as ``key=count``."""
    return [
        [r.name, describe(r.live), describe(r.declared) if r.differs else "",
         r.declared_from or "", _counts(r.running), _counts(r.waiting)]
        for r in reports
    ]  # fmt: skip


def _counts(counts: Mapping[str, int]) -> str:
    return " ".join(f"{key}={n}" for key, n in counts.items())
