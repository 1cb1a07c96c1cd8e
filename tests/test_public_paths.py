"""The import paths users write keep working: every ``from taskit... import ...`` that the
README, the docs and the examples show, and the dotted paths the docs name in prose (some of them
old homes kept as re-exports, such as ``taskit.registry``)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_IMPORT = re.compile(r"^\s*from (taskit[\w.]*) import \(?([\w, ]+)\)?", re.MULTILINE)

#: Paths named in prose (docs, docstrings users read), each as ``module.name``.
NAMED = [
    "taskit.App",
    "taskit.broker.base.Broker",
    "taskit.broker.from_url",
    "taskit.broker.memory.MemoryBroker",
    "taskit.broker.redis.RedisBroker",
    "taskit.handlers.JobHandler",
    "taskit.job.Job",
    "taskit.metrics.Metrics",
    "taskit.presence.live_workers",
    "taskit.registry.WorkerInfo",
    "taskit.registry.live_workers",
    "taskit.scheduler.Scheduler",
    "taskit.scheduler.load_schedules",
    "taskit.service.JobService",
    "taskit.task.Task",
    "taskit.task.TaskOptions",
    "taskit.testing.Harness",
    "taskit.testing.eager",
    "taskit.webhooks.verify",
    "taskit.worker.Worker",
    "taskit.worker.WorkerStats",
]


def _shown() -> list[tuple[str, str, str]]:
    """(file, module, name) of every taskit import in the README, docs and examples."""
    found = []
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("*.py")]
    for path in files:
        for module, names in _IMPORT.findall(path.read_text()):
            for name in filter(None, (n.strip() for n in names.split(","))):
                found.append((str(path.relative_to(ROOT)), module, name))
    return found


def test_the_docs_show_imports() -> None:
    assert len(_shown()) > 20  # the scan finds what it checks


@pytest.mark.parametrize(("where", "module", "name"), _shown())
def test_every_import_the_docs_show_works(where: str, module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{where}: from {module} import {name}"


@pytest.mark.parametrize("path", NAMED)
def test_every_path_the_docs_name_works(path: str) -> None:
    module, _, name = path.rpartition(".")
    assert hasattr(importlib.import_module(module), name), path
