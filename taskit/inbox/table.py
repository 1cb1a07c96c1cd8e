"""The inbox table: the keys of side effects done, inside the application's own database.

One row is one key: the key itself (the primary key, so two transactions claiming one key meet
on its unique index), the claim that holds it (a random token), when it was claimed and when it
expires (seconds since the epoch on the claimer's clock; NULL: never). Like the outbox's table it
belongs to the application's schema: build it on the application's ``MetaData`` so its
migrations (Alembic) see it, or let ``Inbox`` build it on a ``MetaData`` of its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Double, Index, MetaData, String, Table
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["DEFAULT_NAME", "KEY_LENGTH", "inbox_table"]

#: The table's name unless told otherwise.
DEFAULT_NAME = "taskit_inbox"
#: Longest key the table holds, in characters.
KEY_LENGTH = 255
#: Length of a claim's token (hex).
TOKEN_LENGTH = 32

_MYSQL = ("mysql", "mariadb")


class _Key(TypeDecorator[str]):
    """A key compared byte for byte on every database. MySQL's and MariaDB's text collations
    fold case and ignore trailing spaces (``'A'`` and ``'a '`` would be one key), so there the
    column is VARBINARY holding the key's UTF-8 bytes (up to 4 a character)."""

    impl = String(KEY_LENGTH)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.VARBINARY(KEY_LENGTH * 4))
        return dialect.type_descriptor(String(KEY_LENGTH))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name in _MYSQL:
            return value.encode()
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return value.decode() if isinstance(value, bytes) else value


def inbox_table(metadata: MetaData, name: str = DEFAULT_NAME) -> Table:
    """Define the inbox table ``name`` (and its index on ``expires_at``, for purges) on
    ``metadata``; creating it in the database is the caller's (``metadata.create_all(engine)``
    or a migration)."""
    table = Table(
        name,
        metadata,
        Column("key", _Key(), primary_key=True),
        Column("token", String(TOKEN_LENGTH), nullable=False),
        # Double: MySQL's FLOAT is single precision (about two minutes at today's epoch).
        Column("claimed_at", Double, nullable=False),
        Column("expires_at", Double, nullable=True),
    )
    Index(f"ix_{name}_expires_at", table.c.expires_at)
    return table
