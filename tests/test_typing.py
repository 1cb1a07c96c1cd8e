"""``Task[P, R]`` checks ``.enqueue(...)`` and ``.schedule(...)`` against the function's signature.

``mypy --strict`` runs once over ``tests/typing_cases/``: ``ok.py`` must pass as it is, and each
``bad_*.py`` must fail exactly on the lines marked ``# E: <error code>``, with that code.
(The case files are not named ``test_*.py``, so pytest never collects them.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "typing_cases"
BAD = sorted(p.name for p in CASES.glob("bad_*.py"))
MARKER = re.compile(r"#\s*E:\s*([a-z-]+)")
REPORTED = re.compile(r"^(?P<path>[^:]+\.py):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")

Errors = dict[str, set[tuple[int, str]]]


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> Errors:
    """file name -> {(line, error code)} that ``mypy --strict`` reports for it."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    files = [str(p.relative_to(ROOT)) for p in sorted(CASES.glob("*.py"))]
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache)]
    command += ["--no-color-output", "--no-error-summary", "--show-error-codes", *files]
    proc = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode in (0, 1), f"mypy crashed:\n{proc.stdout}\n{proc.stderr}"
    errors: defaultdict[str, set[tuple[int, str]]] = defaultdict(set)
    for line in proc.stdout.splitlines():
        match = REPORTED.match(line)
        if match:
            errors[Path(match["path"]).name].add((int(match["line"]), match["code"]))
        else:
            assert ": note: " in line, f"unexpected mypy output: {line}"
    return dict(errors)


def expected_errors(name: str) -> set[tuple[int, str]]:
    lines = (CASES / name).read_text().splitlines()
    return {
        (number, match[1])
        for number, text in enumerate(lines, start=1)
        if (match := MARKER.search(text))
    }


@pytest.mark.slow
def test_correct_use_type_checks(mypy_errors: Errors) -> None:
    assert mypy_errors.get("ok.py", set()) == set()


@pytest.mark.slow
@pytest.mark.parametrize("name", BAD)
def test_misuse_is_rejected_on_the_marked_lines(mypy_errors: Errors, name: str) -> None:
    expected = expected_errors(name)
    assert expected, f"{name} has no '# E:' markers"
    assert mypy_errors.get(name, set()) == expected


def test_there_are_cases_for_enqueue_and_schedule() -> None:
    assert {"bad_arg_type.py", "bad_missing_arg.py", "bad_unknown_kwarg.py"} <= set(BAD)
    assert "bad_schedule.py" in BAD
