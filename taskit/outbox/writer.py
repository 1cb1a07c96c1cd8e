"""Writing jobs into the outbox, inside the caller's own database transaction.

``Outbox.enqueue(session, task, *args, **kwargs)`` prepares the job exactly as ``task.enqueue``
would (the same argument check and encoding, the same payload limit, the same options), then
inserts it as a row through ``session``: the job exists if and only if that transaction commits.
A relay (``taskit.outbox.relay``) later moves committed rows into the broker.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import msgspec
from sqlalchemy import Connection, MetaData, Table
from sqlalchemy.orm import Session

from taskit.job import Job, encode_job
from taskit.outbox.table import DEFAULT_NAME, outbox_table
from taskit.task import TaskVariant, When, scheduled

__all__ = ["Outbox", "enqueue_in", "schedule_in"]

P = ParamSpec("P")
R = TypeVar("R")

#: What ``enqueue`` writes through: an ORM session or a Core connection, in its transaction.
Writer = Session | Connection


class Outbox:
    """One outbox table (``name`` on ``metadata``; default: a ``MetaData`` of its own) and the
    ways to write jobs into it. Immutable; share one per table."""

    __slots__ = ("table",)

    def __init__(self, metadata: MetaData | None = None, name: str = DEFAULT_NAME) -> None:
        self.table: Table = outbox_table(metadata if metadata is not None else MetaData(), name)

    def __repr__(self) -> str:
        return f"<Outbox table={self.table.name!r}>"

    def create(self, bind: Connection | Any) -> None:
        """Create the table (and its index) in ``bind`` (an engine or connection) unless it
        exists; for scripts and tests: an application's migrations usually do this."""
        self.table.create(bind, checkfirst=True)

    def enqueue(
        self, session: Writer, task: TaskVariant[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Job:
        """Write a job of ``task`` through ``session``, to be enqueued once its transaction
        commits; returns the job as prepared (its id is the broker's). Raises what
        ``task.enqueue`` raises for the call (``TypeError``, ``SerializationError``,
        ``PayloadTooLargeError``) before writing anything; a database error as SQLAlchemy
        raises it."""
        return self._write(session, task, task.prepare(*args, **kwargs))

    def schedule(
        self,
        session: Writer,
        when: When,
        task: TaskVariant[P, R],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Job:
        """``enqueue`` for a job to run at ``when`` (aware datetime) or after it (a delay from
        now, timedelta or seconds), never before: ``task.schedule``'s rules."""
        job, delay = scheduled(task.prepare(*args, **kwargs), when)
        if delay > 0:
            due = datetime.now(UTC) + timedelta(seconds=delay)
            job = msgspec.structs.replace(job, scheduled_at=due)
        return self._write(session, task, job)

    def _write(self, session: Writer, task: TaskVariant[P, R], job: Job) -> Job:
        task.task.producer.check_batch([job])
        session.execute(
            self.table.insert().values(
                job_id=job.id, queue=job.queue, job=encode_job(job), created_at=time.time()
            )
        )
        return job


#: The outbox of the default table (``taskit_outbox``), for ``enqueue_in`` and ``schedule_in``.
DEFAULT = Outbox()


def enqueue_in(
    session: Writer, task: TaskVariant[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> Job:
    """``Outbox().enqueue``: write a job into the default outbox table through ``session``."""
    return DEFAULT.enqueue(session, task, *args, **kwargs)


def schedule_in(
    session: Writer, when: When, task: TaskVariant[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> Job:
    """``Outbox().schedule``: write a scheduled job into the default outbox table."""
    return DEFAULT.schedule(session, when, task, *args, **kwargs)
