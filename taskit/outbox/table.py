"""The outbox table: where jobs wait, inside the application's database, until a relay moves them.

One row is one job: its id (the primary key, and the id the job keeps in the broker), its queue,
the job as taskit encodes it for the wire (``taskit.job.encode_job``), and when it was written
(seconds since the epoch on the writer's clock, the relay's order). The table belongs to the
application's schema: build it on the application's own ``MetaData`` so its migrations (Alembic)
see it, or let ``Outbox`` build it on a ``MetaData`` of its own.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, LargeBinary, MetaData, String, Table
from sqlalchemy.dialects import mysql

__all__ = ["DEFAULT_NAME", "ID_LENGTH", "outbox_table"]

#: The table's name unless told otherwise.
DEFAULT_NAME = "taskit_outbox"
#: Longest job id the table holds (taskit's own are 32 characters; a caller's ``job_id=`` may
#: be longer).
ID_LENGTH = 255

# MySQL's and MariaDB's BLOB holds 64 KiB; a job may be larger (the payload limit is a setting).
_JOB_BYTES = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def outbox_table(metadata: MetaData, name: str = DEFAULT_NAME) -> Table:
    """Define the outbox table ``name`` on ``metadata`` (creating it in the database is the
    caller's: ``metadata.create_all(engine)`` or a migration)."""
    return Table(
        name,
        metadata,
        Column("job_id", String(ID_LENGTH), primary_key=True),
        Column("queue", String(255), nullable=False),
        Column("job", _JOB_BYTES, nullable=False),
        Column("created_at", Float, nullable=False),
        Index(f"ix_{name}_created_at", "created_at"),
    )
