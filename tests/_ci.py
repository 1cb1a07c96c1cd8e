"""One rule for what a test may not find: under ``CI=true`` it fails, elsewhere it skips.

Redis, ``redis-server`` and the dev extra's packages are all set up by ``.ci/run``; a run where
one is missing must never turn green by skipping."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["missing"]


def missing(message: str) -> NoReturn:
    """Fail under ``CI=true``, skip elsewhere, saying what is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
