"""The transactional outbox: a job exists if and only if the database transaction that enqueued
it commits, so a worker never runs before the row it needs is committed, and a failed request
enqueues nothing.

Runs on SQLite and the in-process memory broker, so it needs no server (pip install
'taskit[outbox]'):

    python examples/outbox.py

In production the relay runs beside a worker (`taskit worker app:app --outbox postgresql://...`)
or on its own (`taskit outbox-relay app:app --db postgresql://...`), as many as you like.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import anyio
from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from taskit import App
from taskit.outbox import Outbox, Relay

app = App("memory://")
data = Path(tempfile.mkdtemp())
engine = create_engine(f"sqlite:///{data / 'app.db'}")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]


# The outbox table joins the application's own schema (and its migrations).
outbox = Outbox(Base.metadata)


@app.task(name="emails.welcome")
def welcome(user_id: int) -> str:
    # The user's row is committed before this job can exist: no "user not found" race.
    with Session(engine) as session:
        user = session.get(User, user_id)
        assert user is not None
        return f"welcome mail to {user.email}"


def signup(email: str, *, fail: bool = False) -> str:
    """The application's request: one transaction for the row and the job."""
    with Session(engine) as session, session.begin():
        user = User(email=email)
        session.add(user)
        session.flush()  # the user's id
        job = outbox.enqueue(session, welcome, user.id)
        if fail:
            raise ValueError(f"signup of {email} failed after the enqueue")
    return job.id


async def main() -> None:
    Base.metadata.create_all(engine)
    job_id = signup("ada@example.com")
    try:
        signup("bob@example.com", fail=True)
    except ValueError as exc:
        print(f"rolled back: {exc}")
    relay = Relay(engine, outbox, app.producer)
    print(f"relayed: {await relay.relay_once()} job(s)")
    print(f"relayed again: {await relay.relay_once()} job(s)")
    stats = await app.worker().run(burst=True)
    print(f"{(await app.result(job_id, timeout=5)).value}; jobs run: {stats.completed}")
    with Session(engine) as session:
        print(f"users: {session.scalars(select(User.email)).all()}")


if __name__ == "__main__":
    try:
        anyio.run(main)
    finally:
        engine.dispose()
        shutil.rmtree(data)
