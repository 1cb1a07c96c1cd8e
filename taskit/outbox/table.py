"""The outbox table: where jobs wait, inside the application's database, until a relay moves them.

One row is one job: a sequence number (the primary key, and the relay's order: first written,
first relayed), the job's id (the id the job keeps in the broker), its queue, the job as
taskit encodes it for the wire (``taskit.job.encode_job``), and when it was written (seconds since
the epoch on the writer's clock, for people reading the table). The table belongs to the
application's schema: build it on the application's own ``MetaData`` so its migrations (Alembic)
see it, or let ``Outbox`` build it on a ``MetaData`` of its own.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Double, Integer, LargeBinary, MetaData, String, Table
from sqlalchemy.dialects import mysql

__all__ = ["DEFAULT_NAME", "ID_LENGTH", "outbox_table"]

#: The table's name unless told otherwise.
DEFAULT_NAME = "taskit_outbox"
#: Longest job id the table holds (taskit's own are 32 characters; a caller's ``job_id=`` may
#: be longer).
ID_LENGTH = 255

# MySQL's and MariaDB's BLOB holds 64 KiB; a job may be larger (the payload limit is a setting).
_JOB_BYTES = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
# SQLite numbers rows itself only in an INTEGER PRIMARY KEY.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")


def outbox_table(metadata: MetaData, name: str = DEFAULT_NAME) -> Table:
    """Define the outbox table ``name`` on ``metadata`` (creating it in the database is the
    caller's: ``metadata.create_all(engine)`` or a migration)."""
    return Table(
        name,
        metadata,
        Column("seq", _SEQ, primary_key=True, autoincrement=True),
        # Not unique: a second row of one id (``options(job_id=...)``) is a unique job, as in
        # ``task.enqueue``; the relay enqueues it once.
        Column("job_id", String(ID_LENGTH), nullable=False),
        Column("queue", String(255), nullable=False),
        Column("job", _JOB_BYTES, nullable=False),
        # Double: MySQL's FLOAT is single precision (about two minutes at today's epoch).
        Column("created_at", Double, nullable=False),
    )
