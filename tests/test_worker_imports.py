"""The running parts import downwards only: none of them imports ``taskit.app`` (not under
``TYPE_CHECKING``, not lazily), and the admin commands do not import the CLI that registers them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import taskit

PACKAGE = Path(taskit.__file__).parent


def imported(module: str) -> set[str]:
    """Every taskit module ``module`` imports, anywhere in the file."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("taskit")}


@pytest.mark.parametrize(
    "module",
    ["worker", "execution", "scheduler", "_leases", "_settler", "presence", "registry", "metrics"],
)
def test_the_running_parts_never_import_the_app(module: str) -> None:
    assert not {name for name in imported(module) if name.startswith("taskit.app")}


def test_the_admin_commands_do_not_import_the_cli() -> None:
    assert not {name for name in imported("_cli_admin") if name.startswith("taskit.cli")}
    assert not {name for name in imported("_cli_load") if name.startswith("taskit.cli")}
