"""Fixtures of the chaos suite: every test runs on asyncio (redis-py) against a redis-server of
its own, started and killed by the test, so other tests' data and timing never mix in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from taskit import App
from tests.chaos.harness import Cluster, cluster


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Cluster]:
    """A private redis-server (no persistence) with the default chaos settings: lease 2 s,
    reaper 0.5 s, backoff 0, grace 5 s. Tests needing others build their own ``cluster``."""
    with cluster(tmp_path) as made:
        yield made


@pytest.fixture
async def producer(chaos: Cluster) -> AsyncIterator[App]:
    """An App on the chaos cluster's Redis, for enqueuing and reading jobs from the test."""
    app = App(chaos.url)
    try:
        yield app
    finally:
        await app.close()
