"""What a worker process imports: nothing it does not use (a worker's memory and start, issue 19).

The SQLite broker (and ``sqlite3``) load only when a ``sqlite://`` URL or the CLI's default
database asks for one; the package version (``importlib.metadata``, a few MB and tens of
milliseconds) only when ``taskit.__version__`` or ``taskit --version`` is read; the memory
broker, the canvas and the services only when their names are read; the admin, flow, limit,
workflow and dashboard commands only when they run; the scheduler's parsers only with a
schedule; each Lua script is expanded on its first call.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import click
import pytest

import taskit
import taskit.broker.redis.scripts as scripts_module
from taskit.broker.redis.includes import expand
from taskit.broker.redis.scripts import Scripts
from taskit.cli import _ELSEWHERE, main

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


#: Modules ``import taskit.cli`` (what every ``taskit`` command pays, ``taskit worker`` first)
#: must not load.
NOT_FOR_A_WORKER = (
    "taskit._cli_admin", "taskit._cli_flow", "taskit._cli_limits", "taskit._cli_workflow",
    "taskit._cli_dashboard", "taskit.dashboard", "taskit.broker.memory", "taskit.broker.sharded",
    "taskit.broker.sqlite", "taskit.canvas", "taskit.service", "taskit.oneshot", "taskit.outbox",
    "taskit.webhooks", "taskit.metrics", "taskit.otel", "sqlite3", "tomllib", "cronsim",
    "zoneinfo", "importlib.metadata", "redis", "sqlalchemy", "starlette",
)  # fmt: skip

LEAN = """
import sys
{code}
print("loaded:" + ",".join(m for m in {names!r} if m in sys.modules))
"""


def _loaded_by(code: str, names: tuple[str, ...] = NOT_FOR_A_WORKER) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", LEAN.format(code=code, names=names)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    last = out.rpartition("loaded:")[2].strip()  # after any help text
    return set(last.split(",")) - {""}


def test_the_cli_imports_only_what_a_worker_needs() -> None:
    assert _loaded_by("import taskit.cli") == set()


def test_worker_help_loads_no_other_command() -> None:
    code = (
        "import taskit.cli\n"
        "try:\n"
        "    taskit.cli.main(['worker', '--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert _loaded_by(code) == set()


def test_a_command_loads_its_module_when_it_runs() -> None:
    code = "import taskit.cli\ntaskit.cli.main(['limits', '--help'], standalone_mode=False)"
    assert _loaded_by(code, ("taskit._cli_limits", "taskit._cli_admin", "taskit.dashboard")) == {
        "taskit._cli_limits",
        "taskit._cli_admin",  # its helpers live there
    }


@pytest.mark.parametrize("name", sorted(_ELSEWHERE))
def test_every_lazy_command_resolves_to_itself(name: str) -> None:
    with click.Context(main) as ctx:
        command = main.get_command(ctx, name)
        assert command is not None
        assert command.name == name
        assert name in main.list_commands(ctx)


def test_an_unknown_command_is_still_unknown() -> None:
    with click.Context(main) as ctx:
        assert main.get_command(ctx, "nope") is None


def test_every_public_name_resolves_to_its_module_s_object() -> None:
    for name in taskit.__all__:
        value = getattr(taskit, name)
        if name != "__version__":
            assert getattr(value, "__name__", name) == name, name
    assert set(taskit.__all__) <= set(dir(taskit))


def test_scripts_are_expanded_on_first_use_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(text: str, includes: dict[str, str]) -> str:
        calls.append(text)
        return expand(text, includes)

    monkeypatch.setattr(scripts_module, "expand", counting)
    scripts = Scripts()
    assert calls == []
    reserve = scripts["reserve"]
    assert scripts["reserve"] is reserve
    assert len(calls) == 1
    on_disk = [p for p in resources.files("taskit.broker.redis").joinpath("lua").iterdir()
               if p.name.endswith(".lua") and not p.name.startswith("_")]  # fmt: skip
    assert len(scripts.names) == len(on_disk)  # every script known, not expanded
    assert reserve == scripts_module.SCRIPTS["reserve"]  # what a full expansion gives
