"""Build (once) the Python 3.12 venv that taskit.django is tested and type-checked in.

Django 6 needs Python >= 3.12, while taskit itself supports 3.11 and its own venv (``.venv``) is
3.11. So the Django backend gets a venv of its own, ``.venv-django/`` at the repository root:
taskit's dependencies and its ``django`` and ``django-dev`` extras (Django 6, redis, psycopg for
the PostgreSQL run, mypy and django-stubs for ``mypy --strict taskit/django``), with taskit
itself on the path from this checkout.

It is rebuilt only when its key changes: the bytes of ``pyproject.toml`` and of this script, and
the interpreter's version. pip's cache makes a rebuild cheap. The Python 3.12 interpreter is
found as ``$TASKIT_PYTHON312``, then in pyenv's versions, then as ``python3.12`` on the PATH.

    python3 scripts/django_venv.py           # prints the venv's python; exit 2 without 3.12

Standard library only: it runs under any Python 3.11+, before anything is installed.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-django"
KEY_FILE = VENV / ".taskit-key"
EXTRAS = ("django", "django-dev")
#: What the tests never import: left to compile when (if ever) it is imported.
_NOT_COMPILED = r"/(mypy|mypyc|django-stubs|django_stubs_ext|pip)/"


class NoPython312(RuntimeError):
    """No Python 3.12 interpreter was found."""


def _version(python: str) -> str | None:
    """``python``'s version (``3.12.1``) if it runs, else ``None``."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_python312() -> tuple[str, str]:
    """(path, version) of a Python 3.12; ``NoPython312`` naming where it looked."""
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [os.environ.get("TASKIT_PYTHON312", "")]
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12"), reverse=True)
    candidates.append(shutil.which("python3.12") or "")
    for python in filter(None, candidates):
        version = _version(python)
        if version is not None and version.startswith("3.12."):
            return python, version
    raise NoPython312(
        f"no Python 3.12 found ($TASKIT_PYTHON312, {pyenv_root}/versions/3.12*, python3.12 on "
        "the PATH); Django 6 needs it"
    )


def _key(version: str) -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", Path(__file__)):
        digest.update(path.read_bytes())
    digest.update(version.encode())
    return digest.hexdigest()


def requirements() -> list[str]:
    """taskit's dependencies and its ``EXTRAS``, as pyproject.toml lists them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *(r for name in EXTRAS for r in extras[name])]


def _build(python: str) -> None:
    """A fresh venv with the requirements, and taskit on its path as an editable install is
    (a ``.pth`` line naming the repository: no wheel to build, so no build environment).
    Fast on purpose, since a fresh CI clone builds it: pip comes from the running interpreter
    when it has one (no ensurepip), and pip compiles nothing (see below)."""
    shutil.rmtree(VENV, ignore_errors=True)
    has_pip = (
        subprocess.run(
            [sys.executable, "-m", "pip", "--version"], capture_output=True, check=False
        ).returncode
        == 0
    )
    subprocess.run([python, "-m", "venv", *(["--without-pip"] if has_pip else []), str(VENV)],
                   check=True)  # fmt: skip
    target = str(VENV / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", target] if has_pip else [target, "-m", "pip"]
    done = subprocess.run(
        [*pip, "install", "--quiet", "--no-compile", "--disable-pip-version-check",
         *requirements()],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    site = subprocess.run(
        [target, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "taskit-source.pth").write_text(f"{ROOT}\n")
    # Byte-compile what the tests import, in parallel, once: with PYTHONDONTWRITEBYTECODE set
    # (as it may be) every process would compile Django again (~0.4 s a process). pip's own
    # compile step is slower (serial, and every package: mypy, the stubs).
    subprocess.run(
        [target, "-m", "compileall", "-q", "-j0", "-x", _NOT_COMPILED, site, str(ROOT / "taskit")],
        stdout=subprocess.DEVNULL, check=True,
    )  # fmt: skip


def ensure() -> Path:
    """The venv's python, built first if missing or stale. Raises ``NoPython312``, or
    ``subprocess.CalledProcessError`` if a step of the build fails."""
    python, version = find_python312()
    key = _key(version)
    with open(ROOT / ".venv-django.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once: one builds, the other waits
        if not (KEY_FILE.exists() and KEY_FILE.read_text() == key):
            _build(python)
            KEY_FILE.write_text(key)
    return VENV / "bin" / "python"


def main() -> int:
    try:
        print(ensure())
    except NoPython312 as exc:
        print(f"django_venv: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"django_venv: {exc}\n{exc.stderr or ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
