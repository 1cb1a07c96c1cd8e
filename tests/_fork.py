"""Run a check in a forked copy of this process (as gunicorn ``--preload`` forks its workers)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

__all__ = ["forked"]


def forked(check: Callable[[], int]) -> tuple[int, Callable[[], int]]:
    """Fork; the child runs ``check`` and exits with its status (2 if it raised). Returns the
    child's pid and a function that waits for it and gives its exit code, so the parent can
    work meanwhile."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (pytest's)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status only
        status = 2
        try:
            status = check()
        finally:
            os._exit(status)

    def wait() -> int:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    return pid, wait
