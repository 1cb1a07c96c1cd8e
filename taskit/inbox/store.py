"""Claiming keys in the inbox table, inside the caller's own database transaction.

``Inbox.claim(session, key)`` inserts the key through ``session``: True if this transaction now
holds it, False if another committed claim holds it and has not expired. The mark commits or
rolls back with the handler's own writes, so "the side effect happened" and "the key is marked"
are one fact: a run that fails before its commit leaves neither, and its retry does the work;
a run that committed leaves both, and every later run skips it.

The claim is one statement that inserts the key or takes over an expired row:
``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE expired`` on PostgreSQL and SQLite,
``INSERT ... ON DUPLICATE KEY UPDATE`` on MySQL and MariaDB. Two transactions claiming one key
meet on its unique index: the second waits for the first to end, then gets False (it committed)
or True (it rolled back). It never raises for a duplicate.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from sqlalchemy import Connection, MetaData, Table, and_, case, delete, literal, or_, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from taskit.clock import Clock, SystemClock
from taskit.inbox.table import _MYSQL, DEFAULT_NAME, KEY_LENGTH, inbox_table
from taskit.once import DEFAULT_TTL

__all__ = ["Inbox", "Transaction"]

#: What the inbox works through: an ORM session or a Core connection, in its transaction.
Transaction = Session | Connection


class Inbox:
    """One inbox table (``name`` on ``metadata``; default: a ``MetaData`` of its own) and the
    ways to claim keys in it. ``clock`` tells the time for expiry (tests pass a ``FakeClock``).
    Immutable; share one per table."""

    __slots__ = ("clock", "table")

    def __init__(
        self,
        metadata: MetaData | None = None,
        name: str = DEFAULT_NAME,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.table: Table = inbox_table(metadata if metadata is not None else MetaData(), name)
        self.clock: Clock = clock if clock is not None else SystemClock()

    def __repr__(self) -> str:
        return f"<Inbox table={self.table.name!r}>"

    def create(self, bind: Connection | Any) -> None:
        """Create the table (and its index) in ``bind`` (an engine or connection) unless it
        exists; for scripts and tests: an application's migrations usually do this."""
        self.table.create(bind, checkfirst=True)

    def claim(self, session: Transaction, key: str, *, ttl: float | None = DEFAULT_TTL) -> bool:
        """Mark ``key`` in ``session``'s transaction, for ``ttl`` seconds (a day by default;
        None: for ever). True: this transaction holds the key now, so do the side effect in it;
        False: a committed claim holds it, so skip. The key is taken once the transaction
        commits and is free again if it rolls back; an expired key is claimed again.

        Waits (on the key's unique index) while another transaction holds an uncommitted claim
        of ``key``; a database may end that wait with its lock timeout. At PostgreSQL's
        REPEATABLE READ or SERIALIZABLE, a claim committed after this transaction began raises
        a serialization error instead of returning False (retry the transaction); READ
        COMMITTED, the default, returns False. Raises ``ValueError`` for a bad key or ttl."""
        _check_key(key)
        now = self.clock.time()
        token = secrets.token_hex(16)
        values = {"key": key, "token": token, "claimed_at": now, "expires_at": _expiry(ttl, now)}
        conn = _connection(session)
        if conn.dialect.name in _MYSQL:
            conn.execute(self._upsert_mysql(values, now))
            # MySQL reports 1 changed row for an insert and for a no-op update alike (SQLAlchemy
            # connects with CLIENT_FOUND_ROWS), so look for this claim's own token instead.
            t = self.table
            held_by = conn.execute(select(t.c.token).where(t.c.key == key)).scalar_one_or_none()
            return held_by == token
        return conn.execute(self._upsert(conn.dialect.name, values, now)).first() is not None

    def is_marked(self, session: Transaction, key: str) -> bool:
        """Whether a claim of ``key`` is held and not expired, as ``session`` sees it (its own
        claim included, others' once committed). A read only: to act on the answer, ``claim``
        (two runs that both read False would both do the work)."""
        _check_key(key)
        t = self.table
        found = _connection(session).execute(
            select(t.c.key).where(t.c.key == key, _live(t, self.clock.time()))
        )
        return found.first() is not None

    def forget(self, session: Transaction, key: str) -> bool:
        """Delete ``key``'s claim, expired or not, so the next claim wins (to redo work on
        purpose); returns whether there was one. Takes effect when the transaction commits."""
        _check_key(key)
        t = self.table
        return _connection(session).execute(delete(t).where(t.c.key == key)).rowcount > 0

    def purge(self, session: Transaction, *, before: float | None = None) -> int:
        """Delete the claims expired at ``before`` (seconds since the epoch; default: now);
        returns how many. Expired claims are harmless (``claim`` takes them over), so this only
        keeps the table small: run it from a periodic task."""
        cutoff = self.clock.time() if before is None else before
        t = self.table
        return _connection(session).execute(delete(t).where(t.c.expires_at <= cutoff)).rowcount

    def _upsert(self, dialect: str, values: dict[str, Any], now: float) -> Insert:
        """Insert, or take over an expired row, returning the row when either happened (none:
        the key is held). RETURNING, not the row count, which some drivers do not report."""
        t = self.table
        if dialect == "postgresql":
            pg = postgresql.insert(t).values(values)
            return pg.on_conflict_do_update(
                index_elements=[t.c.key], set_=_taken(pg.excluded), where=_expired(t, now)
            ).returning(t.c.token)
        if dialect == "sqlite":
            lite = sqlite.insert(t).values(values)
            return lite.on_conflict_do_update(
                index_elements=[t.c.key], set_=_taken(lite.excluded), where=_expired(t, now)
            ).returning(t.c.token)
        raise NotImplementedError(f"the inbox does not know the {dialect} database")

    def _upsert_mysql(self, values: dict[str, Any], now: float) -> Insert:
        t = self.table
        expired = _expired(t, now)
        # MySQL assigns left to right, each seeing the ones before: expires_at goes last, so
        # every condition reads the row's old expiry.
        return (
            mysql.insert(t)
            .values(values)
            .on_duplicate_key_update(
                [
                    (name, case((expired, literal(values[name])), else_=t.c[name]))
                    for name in ("token", "claimed_at", "expires_at")
                ]
            )
        )


def _taken(new: Any) -> dict[str, Any]:
    """The columns a takeover sets, from the row that was to be inserted."""
    return {name: new[name] for name in ("token", "claimed_at", "expires_at")}


def _expired(t: Table, now: float) -> Any:
    return and_(t.c.expires_at.is_not(None), t.c.expires_at <= now)


def _live(t: Table, now: float) -> Any:
    return or_(t.c.expires_at.is_(None), t.c.expires_at > now)


def _connection(session: Transaction) -> Connection:
    """The connection of ``session``'s transaction (beginning it, as any statement would)."""
    return session if isinstance(session, Connection) else session.connection()


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"an inbox key must be a non-empty string, got {key!r}")
    if len(key) > KEY_LENGTH:
        raise ValueError(
            f"an inbox key holds at most {KEY_LENGTH} characters, got {len(key)}: "
            f"{key[:40]!r}... (hash a longer one)"
        )
    if "\x00" in key:
        raise ValueError(f"an inbox key cannot contain a NUL character, got {key!r}")


def _expiry(ttl: float | None, now: float) -> float | None:
    """When a claim made ``now`` for ``ttl`` seconds expires (None: never)."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
        raise ValueError(
            f"inbox ttl must be a finite number of seconds > 0, or None for ever, got {ttl!r}"
        )
    return now + ttl
