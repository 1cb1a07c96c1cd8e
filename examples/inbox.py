"""The idempotency inbox: a handler's database side effect done once per key, because the key is
marked in the same transaction as the write.

Runs on SQLite and the in-process memory broker, so it needs no server (pip install
'taskit[outbox]'):

    python examples/inbox.py

* `refund` credits an order in the application's database. Its first attempt fails before the
  commit: the credit and the key roll back together, and the retry does the work. Its second
  attempt commits, then fails to notify: the retry finds the key and writes nothing again.
* The same refund is enqueued twice (a double click): the second job skips it too.
* `purge_inbox` deletes expired keys; in production it runs as a periodic task.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import anyio
from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from taskit import App, Fixed
from taskit.inbox import Inbox

app = App("memory://")
data = Path(tempfile.mkdtemp())
engine = create_engine(f"sqlite:///{data / 'app.db'}")
# The failures to come, last first: the database before the commit, then the notifier after it.
failures = ["notifier not answering", "database connection lost"]


class Base(DeclarativeBase):
    pass


class Credit(Base):
    __tablename__ = "credits"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[str]
    cents: Mapped[int]


# The inbox table joins the application's own schema (and its migrations).
inbox = Inbox(Base.metadata)


@app.task(max_retries=3, backoff=Fixed(0.01))
def refund(order: str, cents: int) -> str:
    with Session(engine) as session, session.begin():
        if not inbox.claim(session, f"refund:{order}", ttl=30 * 86_400):
            return "already refunded"
        session.add(Credit(order_id=order, cents=cents))
        session.flush()
        if failures and failures[-1].startswith("database"):
            raise ConnectionError(failures.pop())  # rolls back the credit and the key together
    if failures:
        raise ConnectionError(failures.pop())  # after the commit: the retry skips the credit
    return "refunded"


@app.periodic(every=3600)
@app.task(name="inbox.purge")
def purge_inbox() -> int:
    with Session(engine) as session, session.begin():
        return inbox.purge(session)


async def main() -> None:
    Base.metadata.create_all(engine)
    jobs = [await refund.enqueue("A-17", 4200)]
    await app.worker(concurrency=1).run(burst=True)
    jobs.append(await refund.enqueue("A-17", 4200))  # the double click, later
    await app.worker(concurrency=1).run(burst=True)
    for job in jobs:
        final = await app.get_job(job.id)
        assert final is not None
        assert final.result is not None
        print(f"refund {final.status.value} attempts={final.attempts}: {final.result.value}")
    with Session(engine) as session:
        credits = session.execute(select(Credit.order_id, Credit.cents)).all()
        print(f"credits: {[tuple(row) for row in credits]}")
    print(f"expired keys purged: {purge_inbox()}")
    await app.close()


if __name__ == "__main__":
    try:
        anyio.run(main)
    finally:
        engine.dispose()
        shutil.rmtree(data)
