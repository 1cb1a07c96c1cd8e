"""The idempotency inbox: a handler's database side effect done once per key, in its own
transaction.

``Inbox.claim(session, key)`` marks ``key`` through the application's SQLAlchemy session and
returns whether this transaction is the first to hold it; the mark commits or rolls back with
the handler's own writes, so a retry after a failure before the commit does the work, and any
run after a commit skips it. Keys expire after a ``ttl``; ``Inbox.purge`` deletes expired ones.
For side effects outside the database (mail, payments), ``App.once`` keeps its keys in the
broker. Needs the ``outbox`` extra (SQLAlchemy 2).
"""

from __future__ import annotations

from taskit.inbox.store import Inbox, Transaction
from taskit.inbox.table import DEFAULT_NAME, KEY_LENGTH, inbox_table

__all__ = ["DEFAULT_NAME", "KEY_LENGTH", "Inbox", "Transaction", "inbox_table"]
