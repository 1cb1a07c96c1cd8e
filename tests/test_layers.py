"""The import graph of taskit: no cycle, and every import points down the layers.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions, because a
cycle hidden behind a lazy import is still a cycle in the design (docs/architecture.md). The
layers, lowest first, are ``LAYERS`` below; a module may import its own layer and the ones below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "taskit"

#: Lowest first. A name ending in "." is a package: every module inside belongs to the layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("taskit.errors", "taskit._ids", "taskit._urls", "taskit.config",
                     "taskit.backoff", "taskit.clock", "taskit._outage", "taskit._portal",
                     "taskit._threads", "taskit._bell", "taskit._logline")),
    ("data", ("taskit.job", "taskit._values", "taskit._storable", "taskit.options",
              "taskit.events", "taskit.hooks", "taskit.limits", "taskit.fairness",
              "taskit.dedup", "taskit.limiting", "taskit.dependencies",
              "taskit.workflow")),
    ("brokers", ("taskit.broker", "taskit.broker.")),
    ("producing", ("taskit._arguments", "taskit.producer", "taskit.task", "taskit._results",
                   "taskit.handlers", "taskit.webhooks", "taskit.ports", "taskit.once",
                   "taskit.outbox", "taskit.outbox.", "taskit.inbox", "taskit.inbox.",
                   "taskit._depends", "taskit._canvas_build", "taskit._workflow_handle",
                   "taskit._canvas_nodes", "taskit._canvas_calls", "taskit._canvas_typing",
                   "taskit.canvas")),
    ("running", ("taskit.execution", "taskit._settler", "taskit._leases", "taskit._handoff",
                 "taskit._chain", "taskit._ledger", "taskit._declare_limits",
                 "taskit._worker_parts", "taskit.progress",
                 "taskit.presence", "taskit.registry", "taskit.worker", "taskit.scheduler",
                 "taskit.metrics", "taskit.oneshot", "taskit._feed")),
    ("wiring", ("taskit.app", "taskit.service", "taskit.testing", "taskit.pytest_plugin",
                "taskit._limit_report",
                "taskit.otel", "taskit.audit", "taskit.django", "taskit.django.")),
    ("entry points", ("taskit._cli_load", "taskit._cli_options", "taskit._cli_admin",
                      "taskit._cli_outbox",
                      "taskit._cli_flow", "taskit._cli_limits", "taskit.cli",
                      "taskit.__main__", "taskit", "taskit._cli_workflow",
                      "taskit._cli_dashboard", "taskit.dashboard", "taskit.dashboard.")),
]  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from package import module`` imports the module; any other name comes from
            # the package itself (a package's parents run first in any case: not an import).
            submodules = [f"{target}.{alias.name}" for alias in node.names]
            candidates = [m for m in submodules if m in known]
            if len(candidates) < len(submodules):
                candidates.append(target)
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        out.update(c for c in candidates if c in known and c != name)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module.startswith(p) if p.endswith(".") else module == p for p in prefixes):
            return rank
    raise AssertionError(f"module {module} is in no layer: add it to LAYERS")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


BROKERS = ("taskit.broker.memory", "taskit.broker.redis", "taskit.broker.sqlite")


def test_no_broker_imports_another() -> None:
    """What two brokers share lives in ``taskit.broker.base``, not in one of them."""
    crossing = [
        f"{module} imports {target}"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        for own in BROKERS
        if module.startswith(own) and target.startswith(BROKERS) and not target.startswith(own)
    ]
    assert crossing == []


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    """The checks above can fail: a made-up graph with a lazy cycle is caught."""
    graph = {"taskit.task": {"taskit.app"}, "taskit.app": {"taskit.task"}, "taskit.job": set()}
    assert _cycles(graph) == [["taskit.app", "taskit.task"]]
    assert _layer("taskit.task") < _layer("taskit.app")


@pytest.mark.parametrize("module", sorted(_modules()))
def test_every_module_has_a_layer(module: str) -> None:
    assert 0 <= _layer(module) < len(LAYERS)
