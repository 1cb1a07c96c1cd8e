"""What a worker process imports: nothing it does not use (a worker's memory, issue 19).

The SQLite broker (and ``sqlite3``) load only when a ``sqlite://`` URL or the CLI's default
database asks for one; the package version (``importlib.metadata``, a few MB and tens of
milliseconds) only when ``taskit.__version__`` or ``taskit --version`` is read.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import taskit, taskit.cli, taskit.worker
from taskit.broker import from_url
from_url("memory://")
{extra}
print(",".join(m for m in ("taskit.broker.sqlite", "sqlite3", "importlib.metadata")
               if m in sys.modules))
"""


def _loaded(extra: str = "") -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(extra=extra)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return set(out.split(",")) - {""}


def test_a_memory_worker_loads_neither_sqlite_nor_package_metadata() -> None:
    assert _loaded() == set()


@pytest.mark.parametrize(
    ("extra", "loads"),
    [
        ("from taskit.broker import SqliteBroker", {"taskit.broker.sqlite", "sqlite3"}),
        ("from_url('sqlite:///' + __import__('tempfile').mkdtemp() + '/j.db')", {"sqlite3"}),
        ("taskit.__version__", {"importlib.metadata"}),
    ],
)
def test_each_loads_on_first_use(extra: str, loads: set[str]) -> None:
    assert loads <= _loaded(extra)


def test_an_unknown_attribute_is_still_an_attribute_error() -> None:
    import taskit
    import taskit.broker

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = taskit.nope  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = taskit.broker.nope  # type: ignore[attr-defined]
