"""A benchmark's child process importing ``taskit`` from another tree: A/B runs of this tree
beside an earlier commit's ``taskit/`` (copied out with ``sqlite_instructions.base_tree``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["ROOT", "run_child"]

ROOT = Path(__file__).parent.parent


def run_child(module: str, tree: Path | None, *args: str) -> list[str]:
    """``python -m <module> --child <args>`` in a fresh process importing taskit from ``tree``
    (None: this tree), the benchmarks this tree's; the lines it printed after the first, which
    must be the ``taskit.__file__`` it imported (``RuntimeError`` if from elsewhere)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(t) for t in (tree, ROOT) if t])}
    # Run from elsewhere: from ROOT, ``-m`` would import ROOT's taskit first.
    out = subprocess.run(
        [sys.executable, "-m", module, "--child", *args],
        cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    imported = next((line for line in lines if line.endswith("__init__.py")), "")
    if not imported.startswith(str(tree or ROOT)):
        raise RuntimeError(f"the child imported the wrong taskit: {imported or 'nothing said'}")
    return lines[lines.index(imported) + 1 :]
