"""The databases the outbox runs on: SQLite (a file), and the real PostgreSQL and MariaDB on
this machine (``TASKIT_TEST_POSTGRES_URL`` / ``TASKIT_TEST_MARIADB_URL`` point elsewhere).
Each test gets its own table, named after this branch, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine  # the dev extra has it
from sqlalchemy.exc import OperationalError

from taskit.outbox import Outbox
from tests._ci import missing

POSTGRES_URL = os.environ.get(
    "TASKIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("TASKIT_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
DATABASES = ["sqlite", "postgresql", "mariadb"]


def engine_for(kind: str, tmp_path: Path) -> Engine:
    """An engine on ``kind``'s database; fails under CI, skips elsewhere, when it is missing."""
    url = {"sqlite": f"sqlite:///{tmp_path / 'app.db'}", "postgresql": POSTGRES_URL}.get(
        kind, MARIADB_URL
    )
    try:
        engine = create_engine(url)
        with engine.connect():
            pass
    except (ImportError, OperationalError) as exc:
        missing(f"no {kind} database at {url}: {exc}")
    return engine


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of one database kind (checked to answer)."""
    engine = engine_for(request.param, tmp_path)
    yield engine.url.render_as_string(hide_password=False)
    engine.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def row_locking(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Outbox]]:
    """An engine on a database with row locks (SQLite has one writer) and an outbox table."""
    engine = engine_for(request.param, tmp_path)
    box = Outbox(name=f"i13_outbox_{uuid.uuid4().hex[:12]}")
    box.create(engine)
    yield engine, box
    box.table.drop(engine, checkfirst=True)
    engine.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def outbox(engine: Engine) -> Iterator[Outbox]:
    """An outbox table of this test's own, created, and dropped afterwards."""
    box = Outbox(name=f"i13_outbox_{uuid.uuid4().hex[:12]}")
    box.create(engine)
    yield box
    box.table.drop(engine, checkfirst=True)
