"""The inbox's databases: SQLite (a file), and the real PostgreSQL and MariaDB on this machine,
found as the outbox's tests find them (``tests/outbox/conftest.py``: missing fails under
``CI=true``). Each test gets its own inbox table, on a fake clock, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from taskit.clock import FakeClock
from taskit.inbox import Inbox
from tests.outbox.conftest import DATABASES, engine_for


@pytest.fixture(params=DATABASES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = engine_for(request.param, tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def inbox(engine: Engine, clock: FakeClock) -> Iterator[Inbox]:
    """An inbox table of this test's own, created, and dropped afterwards."""
    box = Inbox(name=f"h13_inbox_{uuid.uuid4().hex[:12]}", clock=clock)
    box.create(engine)
    yield box
    box.table.drop(engine, checkfirst=True)
