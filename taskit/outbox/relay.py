"""The relay: moves committed outbox rows into the broker, each row exactly once.

One pass, in one database transaction:

1. **Claim** up to ``batch`` of the oldest rows. PostgreSQL, MySQL and MariaDB lock them with
   ``SELECT ... FOR UPDATE SKIP LOCKED`` (at READ COMMITTED: no gap locks), so any number of
   relays share the table, each row claimed by one at a time. SQLite has one writer: the claim
   is a ``DELETE ... RETURNING``, which takes the database's write lock at once (a second relay
   waits for the first to commit).
2. **Look up** each row's job id in the broker and **enqueue** only those not there. The row
   carries the job's id, fixed when it was written: a relay that died after its enqueue but
   before its commit left the rows in the table (the database rolled its transaction back) and
   the jobs in the broker; the next pass finds them by id and enqueues nothing again. The
   look-up is needed because the broker *replaces* a finished job on an enqueue of its id
   (``Broker.enqueue``): without it a job that already ran would run twice. The broker's own
   dedupe covers a job not yet finished.
3. **Delete** the rows (SQLite: already done in step 1) and **commit**.

A row whose bytes are not a job is logged and dropped. Any other failure (broker or database)
rolls the transaction back and leaves the rows for the next pass; ``run`` waits it out with
``taskit._outage.Outage``.

Exactly once holds while the broker remembers a finished job, i.e. when the pass after a crash
comes within the job's retention. A relayed job whose task and call chose no ``result_ttl`` is
kept ``RELAYED_RESULT_TTL`` (a day) once finished, not the broker's ``result_ttl`` (ten minutes
by default): a database outage outlasts ten minutes more often than a day. A job with its own
``result_ttl`` keeps it (0 forgets a finished job at once, and a job relayed by a pass that died
could then run again).

The database work is synchronous SQLAlchemy (any driver the application uses) in a worker thread;
the broker calls go back to the event loop from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec
from sqlalchemy import Connection, Engine, bindparam, delete, select

from taskit._outage import Outage
from taskit.errors import SerializationError
from taskit.job import Job, decode_job
from taskit.outbox.writer import Outbox
from taskit.producer import Producer

__all__ = ["BATCH", "IDLE", "RELAYED_RESULT_TTL", "Relay"]

log = logging.getLogger(__name__)

#: Rows one pass moves at most.
BATCH = 100
#: Seconds a relay waits after a pass that found fewer than a full batch.
IDLE = 1.0
#: Seconds a relayed job with no ``result_ttl`` of its own is kept once finished: the window in
#: which a pass after a relay's crash still finds it (the module's docstring).
RELAYED_RESULT_TTL = 86400.0


class Relay:
    """Moves the rows of ``outbox`` in the database of ``engine`` into ``producer``'s broker
    (through ``producer.submit``, so the events see them created). ``batch`` rows a pass,
    ``idle`` seconds between passes that drained the table."""

    def __init__(
        self,
        engine: Engine,
        outbox: Outbox,
        producer: Producer,
        *,
        batch: int = BATCH,
        idle: float = IDLE,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if not idle >= 0:
            raise ValueError(f"idle must be >= 0 seconds, got {idle}")
        self.engine = engine
        self.outbox = outbox
        self.producer = producer
        self.batch = batch
        self.idle = idle

    def __repr__(self) -> str:
        return f"<Relay table={self.outbox.table.name!r} db={self.engine.dialect.name}>"

    async def run(self) -> None:
        """Relay until cancelled: a pass, again at once while passes find full batches, else
        after ``idle`` seconds; a failed pass is retried with backoff. Cancellation mid-pass
        rolls that pass back (nothing is lost; nothing is enqueued twice)."""
        outage = Outage("outbox relay", log)
        log.info(
            "outbox relay started: table %s on %s, %d rows a pass",
            self.outbox.table.name, self.engine.dialect.name, self.batch,
        )  # fmt: skip
        while True:
            try:
                moved = await self.relay_once()
            except Exception as exc:  # any failure: the rows stay for the next pass
                await anyio.sleep(outage.failed(exc))
                continue
            outage.recovered()
            if moved < self.batch:
                await anyio.sleep(self.idle)

    async def relay_once(self) -> int:
        """One pass (see the module's docstring); returns how many rows it took from the table.
        Raises the broker's or the database's error, having committed nothing."""
        return await anyio.to_thread.run_sync(self._pass)

    def _pass(self) -> int:
        """The pass, in a worker thread: the connection stays in this thread throughout."""
        with self.engine.connect() as conn:
            if conn.dialect.name != "sqlite":
                # No gap locks (MySQL and MariaDB default to REPEATABLE READ, whose next-key
                # locks deadlock two relays claiming neighbouring rows): only claimed rows lock.
                conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                return self._pass_in(conn)

    def _pass_in(self, conn: Connection) -> int:
        """The pass inside its transaction on ``conn``."""
        rows = self._claim(conn)
        if not rows:
            return 0
        jobs = _decoded(rows)
        anyio.from_thread.run(self._send, jobs)
        if conn.dialect.name != "sqlite":
            t = self.outbox.table
            # One row at a time by its key: a ``seq IN (...)`` may be planned as a scan that
            # waits on rows another relay holds, and so deadlock with it (seen on MariaDB).
            conn.execute(
                delete(t).where(t.c.seq == bindparam("claimed")),
                [{"claimed": row.seq} for row in rows],
            )
        return len(rows)

    def _claim(self, conn: Connection) -> Sequence[Any]:
        """Lock (or, on SQLite, delete) the oldest ``batch`` rows; returned oldest first.
        Rows are SQLAlchemy's (``seq``, ``job_id``, ``job``, ``created_at``); typed ``Any`` because
        ``Row``'s generic form differs between SQLAlchemy 2.0 and 2.1."""
        t = self.outbox.table
        oldest = select(t.c.seq).order_by(t.c.seq).limit(self.batch)
        if conn.dialect.name == "sqlite":
            claimed = conn.execute(
                delete(t)
                .where(t.c.seq.in_(oldest.scalar_subquery()))
                .returning(t.c.seq, t.c.job_id, t.c.job, t.c.created_at)
            ).all()
            return sorted(claimed, key=lambda row: row.seq)
        return conn.execute(
            select(t.c.seq, t.c.job_id, t.c.job, t.c.created_at)
            .order_by(t.c.seq)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
        ).all()

    async def _send(self, jobs: Sequence[Job]) -> None:
        """Enqueue those of ``jobs`` the broker does not have (see the module's docstring)."""
        broker = self.producer.broker
        fresh = [_remembered(job) for job in jobs if await broker.get(job.id) is None]
        if fresh:
            await self.producer.submit(fresh)


def _remembered(job: Job) -> Job:
    """``job`` kept ``RELAYED_RESULT_TTL`` once finished, unless it chose its own retention."""
    if job.result_ttl is not None:
        return job
    return msgspec.structs.replace(job, result_ttl=RELAYED_RESULT_TTL)


def _decoded(rows: Sequence[Any]) -> list[Job]:
    """The jobs of ``rows``. A row whose bytes are not a job (written by an incompatible
    taskit) can never be enqueued: it is logged as an ERROR (its id, size and time, never its
    bytes) and deleted with the others, so it cannot stall the table's head for ever."""
    jobs = []
    for row in rows:
        try:
            jobs.append(decode_job(row.job))
        except SerializationError as exc:
            log.error(
                "outbox row %s is not a job (%d bytes, written at %s): %s; dropped",
                row.job_id, len(row.job), time.ctime(row.created_at), exc,
            )  # fmt: skip
    return jobs
