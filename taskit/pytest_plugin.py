"""pytest fixtures for testing code that uses taskit (see ``taskit.testing``).

Loaded automatically wherever taskit is installed (the ``pytest11`` entry point), so a test only
asks for a fixture:

    async def test_signup(taskit_harness):
        harness = taskit_harness(app, eager=True)   # closed at the end of the test
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from taskit.testing import FakeClock, Harness

if TYPE_CHECKING:
    from taskit.app import App

__all__ = ["taskit_harness"]


@pytest.fixture
def taskit_harness() -> Iterator[Callable[..., Harness]]:
    """A factory ``(app, *, eager=False, clock=None) -> Harness``: each harness it opens swaps
    that App's broker for an in-memory one until the test ends."""
    opened: list[Harness] = []

    def open_harness(app: App, *, eager: bool = False, clock: FakeClock | None = None) -> Harness:
        harness = Harness(app, eager=eager, clock=clock).__enter__()
        opened.append(harness)
        return harness

    yield open_harness
    for harness in reversed(opened):
        harness.__exit__(None, None, None)
