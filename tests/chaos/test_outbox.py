"""Row 29 of the chaos catalogue: the outbox relay under kill -9 and dropped database connections.

A producer thread writes transactions of 1-5 jobs into an outbox and rolls a quarter of them back;
two `taskit outbox-relay` processes move the rows into a private Redis through a TCP proxy to the
database that drops a relay's connection right after a statement on the outbox ran (its reply
lost: mid-batch, before or after the enqueue); the relays are killed with SIGKILL and restarted
all along; a `taskit worker` runs the jobs as they come, so a job relayed twice would find its
first copy finished, the case a relay must not re-enqueue. Afterwards every committed row ran
exactly once (the ledger) and is one completed job in Redis, and no rolled-back row ever ran.

``OUTBOX_CHAOS_SECONDS`` sets how long the storm lasts (CI: 6 s a database).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import anyio
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from taskit import App
from taskit.outbox import Outbox
from tests._proxy import lossy_proxy
from tests.apps.outbox_app import record
from tests.chaos.harness import Cluster, wait_until
from tests.e2e.helpers import WorkerProcess
from tests.outbox.conftest import engine_for

pytestmark = pytest.mark.slow

APP = "tests.apps.outbox_app:app"
SECONDS = float(os.environ.get("OUTBOX_CHAOS_SECONDS", "6"))


class Producer:
    """Writes transactions into ``outbox`` until stopped; remembers what committed and what not."""

    def __init__(self, url: str, outbox: Outbox) -> None:
        self.engine = create_engine(url)
        self.outbox = outbox
        self.committed: list[str] = []
        self.rolled_back: list[str] = []
        self.stopping = threading.Event()
        self.rng = random.Random(1)
        self.thread = threading.Thread(target=self._run, name="outbox-producer", daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            keys = [f"t{n}-{i}" for i in range(self.rng.randint(1, 5))]
            n += 1
            if self.rng.random() < 0.25:
                with Session(self.engine) as session:
                    for key in keys:
                        self.outbox.enqueue(session, record, key)
                    session.rollback()
                self.rolled_back += keys
            else:
                with Session(self.engine) as session, session.begin():
                    for key in keys:
                        self.outbox.enqueue(session, record, key)
                self.committed += keys
            time.sleep(0.005)

    def __enter__(self) -> Producer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(30)
        self.engine.dispose()


def ran(ledger: Path) -> Counter[str]:
    return Counter(
        line for path in ledger.glob("*.ledger") for line in path.read_text().splitlines()
    )


@pytest.fixture(params=["postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Outbox]]:
    """The database's URL and an outbox table of this test's own (dropped afterwards)."""
    engine = engine_for(request.param, tmp_path)
    outbox = Outbox(name=f"i13_outbox_chaos_{uuid.uuid4().hex[:8]}")
    outbox.create(engine)
    try:
        yield engine.url.render_as_string(hide_password=False), outbox
    finally:
        outbox.table.drop(engine, checkfirst=True)
        engine.dispose()


def test_row29_every_committed_row_runs_once_under_relay_kills_and_cut_connections(
    chaos: Cluster, database: tuple[str, Outbox]
) -> None:
    url, outbox = database
    ledger = chaos.directory / "outbox-ledger"
    ledger.mkdir()
    env = chaos.env(OUTBOX_LEDGER=str(ledger), TASKIT_RESULT_TTL="600")
    direct = make_url(url)
    rng = random.Random(0)
    with ExitStack() as stack:
        proxy = stack.enter_context(lossy_proxy(direct.port or 0, seed=2))
        proxied = direct.set(host="127.0.0.1", port=proxy.port)
        if direct.get_backend_name() == "postgresql":  # in clear, so the proxy sees statements
            proxied = proxied.update_query_dict({"sslmode": "disable"})
        relay_args = ("--db", proxied.render_as_string(hide_password=False),
                      "--table", outbox.table.name, "--batch", "10")  # fmt: skip

        def relay() -> WorkerProcess:
            process = WorkerProcess(APP, env, *relay_args, command="outbox-relay")
            stack.callback(process.close)
            process.wait_for_line("outbox relay started", timeout=30)
            return process

        worker = WorkerProcess(APP, env, "--queues", "outbox", "--concurrency", "8")
        stack.callback(worker.close)
        relays = [relay(), relay()]
        proxy.cut_randomly(outbox.table.name.encode(), 0.15)
        with Producer(url, outbox) as producer:
            deadline = time.monotonic() + SECONDS
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(0.2, 1.0))
                victim = rng.randrange(len(relays))
                relays[victim].proc.kill()  # SIGKILL, wherever it is in its batch
                relays[victim].proc.wait()
                relays[victim] = relay()
        proxy.cut_randomly(b"", 0.0)
        assert producer.committed
        assert producer.rolled_back

        engine = create_engine(url)
        stack.callback(engine.dispose)

        def drained() -> bool:
            with engine.connect() as conn:
                left = conn.execute(select(func.count()).select_from(outbox.table)).scalar_one()
            return int(left) == 0

        wait_until(drained, timeout=60, what="the outbox to drain")
        wait_until(
            lambda: sum(ran(ledger).values()) >= len(producer.committed),
            timeout=60, what="every committed job to run",
        )  # fmt: skip
        time.sleep(1.0)  # a late duplicate would show up here

        counts = ran(ledger)
        assert {k: n for k, n in counts.items() if n > 1} == {}, "a row ran more than once"
        assert set(counts) == set(producer.committed)
        assert not set(counts) & set(producer.rolled_back)
        assert proxy.cuts > 0, "no database connection was dropped: the test tested nothing"

        async def completed() -> int:
            app = App(chaos.url)
            try:
                return (await app.broker.stats(["outbox"]))["outbox"].completed
            finally:
                await app.close()

        assert anyio.run(completed) == len(producer.committed)
