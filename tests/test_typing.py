"""``Task[P, R]`` checks ``.enqueue(...)`` and ``.schedule(...)`` against the function's signature.

``mypy --strict`` runs once over ``tests/typing_cases/``: each ``ok*.py`` must pass as it is, and
each ``bad_*.py`` must fail exactly on the lines marked ``# E: <error code>``, with that code.
(The case files are not named ``test_*.py``, so pytest never collects them.)

mypy runs on copies of the cases in a directory outside the source tree, without ``MYPYPATH`` or
``PYTHONPATH``: it must find taskit as installed (``scripts/test.sh`` installs it editable), as a
user's project would. Run from the repository root, it would find the source directory instead
and pass even where a user's mypy cannot see taskit at all (setuptools' import-hook editable
install: every ``.enqueue`` argument then goes unchecked). A taskit that mypy cannot find fails
the fixture loudly. ``test_a_wheel_install_type_checks_the_same`` does the same against a wheel
built from the tree and installed into a scratch environment.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "typing_cases"
BAD = sorted(p.name for p in CASES.glob("bad_*.py"))
OK = sorted(p.name for p in CASES.glob("ok*.py"))
MARKER = re.compile(r"#\s*E:\s*([a-z-]+)")
REPORTED = re.compile(r"^(?P<path>[^:]+\.py):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")

Errors = dict[str, set[tuple[int, str]]]


def run_mypy(cases: Path, cache: Path, python: str | None = None) -> Errors:
    """file name -> {(line, error code)} that ``mypy --strict`` reports for the cases in
    ``cases`` (run there, so only an installed taskit can be found). ``python``: the interpreter
    whose packages mypy searches (default: this one)."""
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache)]
    command += ["--no-color-output", "--no-error-summary", "--show-error-codes"]
    if python is not None:
        command += ["--python-executable", python]
    command += sorted(p.name for p in cases.glob("*.py"))
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    proc = subprocess.run(
        command, cwd=cases, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode in (0, 1), f"mypy crashed:\n{proc.stdout}\n{proc.stderr}"
    if 'module named "taskit"' in proc.stdout or "[import-untyped]" in proc.stdout:
        pytest.fail(
            "mypy cannot find the installed taskit (an editable install through an import hook, "
            f"which static checkers do not run?):\n{proc.stdout}"
        )
    errors: defaultdict[str, set[tuple[int, str]]] = defaultdict(set)
    for line in proc.stdout.splitlines():
        match = REPORTED.match(line)
        if match:
            errors[Path(match["path"]).name].add((int(match["line"]), match["code"]))
        else:
            assert ": note: " in line, f"unexpected mypy output: {line}"
    return dict(errors)


def copy_cases(into: Path) -> Path:
    """The case files, copied to ``into`` (outside the source tree)."""
    into.mkdir(parents=True, exist_ok=True)
    for case in CASES.glob("*.py"):
        shutil.copy(case, into / case.name)
    assert not (into / "taskit").exists()
    return into


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> Errors:
    """What mypy reports for the cases, against the installed taskit."""
    work = tmp_path_factory.mktemp("typing")
    return run_mypy(copy_cases(work / "cases"), work / "mypy-cache")


def expected_errors(name: str) -> set[tuple[int, str]]:
    lines = (CASES / name).read_text().splitlines()
    return {
        (number, match[1])
        for number, text in enumerate(lines, start=1)
        if (match := MARKER.search(text))
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", OK)
def test_correct_use_type_checks(mypy_errors: Errors, name: str) -> None:
    assert mypy_errors.get(name, set()) == set()


@pytest.mark.slow
@pytest.mark.parametrize("name", BAD)
def test_misuse_is_rejected_on_the_marked_lines(mypy_errors: Errors, name: str) -> None:
    expected = expected_errors(name)
    assert expected, f"{name} has no '# E:' markers"
    assert mypy_errors.get(name, set()) == expected


def test_there_are_cases_for_enqueue_and_schedule() -> None:
    assert {"bad_arg_type.py", "bad_missing_arg.py", "bad_unknown_kwarg.py"} <= set(BAD)
    assert "bad_schedule.py" in BAD
    assert {"ok.py", "ok_workflows.py"} <= set(OK)
    assert "bad_workflows.py" in BAD


@pytest.mark.slow
def test_a_wheel_install_type_checks_the_same(tmp_path: Path) -> None:
    """A wheel built from the tree, installed alone into a scratch environment (its dependencies
    seen through a ``.pth`` to this environment's packages): it ships ``py.typed`` and the Lua
    scripts, and mypy checks the cases against it exactly as against the development install."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "taskit", src / "taskit", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, timeout=120)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("taskit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"taskit/py.typed", "taskit/task.py"} <= names
    lua = {
        f"taskit/broker/redis/lua/{p.name}" for p in (ROOT / "taskit/broker/redis/lua").iterdir()
    }
    assert lua <= names  # every script, and the helpers they include
    assert "taskit/broker/redis/transport/fast.py" in names
    assets = ROOT / "taskit/dashboard"
    shipped = {
        f"taskit/dashboard/{p.relative_to(assets).as_posix()}"
        for p in [*(assets / "templates").iterdir(), *(assets / "static").iterdir()]
    }
    assert shipped <= names  # the dashboard's templates, JS and CSS
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run([*pip, "--python", python, "install", "--no-deps", str(wheel)], check=True)
    where = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(where) / "_deps.pth").write_text("\n".join(deps) + "\n")
    found = subprocess.run(
        [python, "-c", "import taskit; print(taskit.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert found.startswith(str(env_dir)), found  # the wheel's taskit, not the source tree
    errors = run_mypy(copy_cases(tmp_path / "cases"), tmp_path / "mypy-cache", python)
    for name in OK:
        assert errors.get(name, set()) == set(), name
    for name in BAD:
        assert errors.get(name, set()) == expected_errors(name), name
