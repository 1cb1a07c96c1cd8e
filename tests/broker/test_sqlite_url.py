"""``sqlite://`` broker URLs (``taskit._urls``): SQLAlchemy's convention (three slashes: a
path relative to the current directory; four: an absolute one), checked with errors naming the
bad part; ``from_url`` and ``App`` build a ``SqliteBroker`` from them."""

from __future__ import annotations

from pathlib import Path

import pytest

import taskit.broker
from taskit import App, Settings
from taskit._urls import parse_broker_url
from taskit.broker import MemoryBroker, SqliteBroker, from_url
from taskit.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///jobs.db", "jobs.db"),
        ("sqlite:///data/jobs.db", "data/jobs.db"),
        ("sqlite:////var/lib/app/jobs.db", "/var/lib/app/jobs.db"),
        ("SQLite:///jobs.db", "jobs.db"),
    ],
)
def test_a_sqlite_url_names_a_file_relative_with_three_slashes_absolute_with_four(
    url: str, path: str
) -> None:
    parsed = parse_broker_url(url)
    assert (parsed.scheme, parsed.path, parsed.url) == ("sqlite", path, url)
    assert Settings(broker_url=url).broker_url == url


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("sqlite://", "three slashes"),
        ("sqlite:/jobs.db", "three slashes"),
        ("sqlite:///", "needs a file path"),
        ("sqlite:///:memory:", "use memory://"),
        ("sqlite://localhost/jobs.db", "not a host 'localhost'"),
        ("sqlite:///jobs/", "names a directory"),
        ("sqlite:///jobs.db?result_ttl=60", "unknown option 'result_ttl'"),
        ("sqlite:///jobs.db?result_ttl=60", "TASKIT_RESULT_TTL"),
        ("sqlite:///jobs.db?prefix=shop", "unknown option 'prefix'"),
        ("sqlite:///jobs.db#x", "fragment"),
        ("sqlite:///jobs.db?synchronous=off", "synchronous='off'; use normal"),
        ("sqlite:///jobs.db?synchronous=", "option 'synchronous' has no value"),
        ("sqlite:///jobs.db?synchronous=full&synchronous=full", "given twice"),
    ],
)
def test_a_bad_sqlite_url_is_refused_naming_the_bad_part(url: str, part: str) -> None:
    with pytest.raises(ConfigurationError, match="broker URL") as caught:
        Settings(broker_url=url)
    assert part in str(caught.value)
    assert caught.value.setting == "broker_url"


def test_from_url_builds_a_sqlite_broker_on_the_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    broker = from_url("sqlite:///jobs.db")
    assert isinstance(broker, SqliteBroker)
    assert broker._path == str(tmp_path / "jobs.db")  # a later chdir does not move it
    assert taskit.broker.SqliteBroker is SqliteBroker
    assert "SqliteBroker" in taskit.broker.__all__


@pytest.mark.parametrize(
    ("query", "synchronous", "pragma"),
    [("", None, 1), ("?synchronous=normal", "normal", 1), ("?synchronous=FULL", "full", 2)],
)
@pytest.mark.anyio
async def test_synchronous_in_the_url_sets_the_connections_sync(
    tmp_path: Path, query: str, synchronous: str | None, pragma: int
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db{query}"
    assert parse_broker_url(url).synchronous == synchronous
    broker = from_url(url)
    assert isinstance(broker, SqliteBroker)
    store = broker._store
    try:
        await store.run(lambda tx: None)  # the thread's connection: the schema checked
        here, _ = await store.run(
            lambda tx: tx.conn.execute("PRAGMA synchronous").fetchone()[0], small=True
        )
        sync, _ = await store.run(lambda tx: tx.conn.execute("PRAGMA synchronous").fetchone()[0])
        blocking, _ = store.run_blocking(
            lambda tx: tx.conn.execute("PRAGMA synchronous").fetchone()[0]
        )
    finally:
        await broker.close()
    assert (here, sync, blocking) == (pragma, pragma, pragma)  # 1: NORMAL, 2: FULL


def test_a_bad_synchronous_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="synchronous must be one of normal, full"):
        SqliteBroker(tmp_path / "jobs.db", synchronous="off")
    SqliteBroker(tmp_path / "jobs.db", synchronous="FULL")  # any case, as in a URL


def test_from_url_refuses_a_directory_or_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory, not a database file"):
        from_url(f"sqlite:///{tmp_path}")
    with pytest.raises(ConfigurationError, match=r"directory .*nowhere of the database file"):
        from_url(f"sqlite:///{tmp_path}/nowhere/jobs.db")
    assert not (tmp_path / "nowhere").exists()  # nothing made


@pytest.mark.anyio
async def test_an_app_given_a_sqlite_url_stores_its_jobs_in_the_file(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path}/jobs.db", settings=Settings(result_ttl=60.0))

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    job = await add.enqueue(1, 2)
    other = from_url(f"sqlite:///{tmp_path}/jobs.db")  # as another process would see it
    try:
        stored = await other.get(job.id)
        assert stored is not None
        assert stored.task == "add"
    finally:
        await other.close()
        await app.close()
    assert not app.broker_is_default


def test_an_app_that_names_no_broker_falls_back_to_memory_and_says_so() -> None:
    unnamed = App(settings=Settings())
    assert isinstance(unnamed.broker, MemoryBroker)
    assert unnamed.broker_is_default
    for chosen in (
        App("memory://", settings=Settings()),
        App(settings=Settings(broker_url="memory://")),
        App(MemoryBroker(), settings=Settings()),
    ):
        assert isinstance(chosen.broker, MemoryBroker)
        assert not chosen.broker_is_default
