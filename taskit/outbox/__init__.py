"""The transactional outbox: jobs enqueued inside the application's own database transaction.

``Outbox.enqueue(session, task, *args, **kwargs)`` (or ``enqueue_in`` for the default table)
writes the job as a row through the application's SQLAlchemy session, so the job exists if and
only if that transaction commits. A ``Relay`` (``taskit worker --outbox URL``, or
``taskit outbox-relay``) moves committed rows into the broker, each exactly once, with the row's
id as the job's id. Needs the ``outbox`` extra (SQLAlchemy 2).
"""

from __future__ import annotations

from taskit.outbox.relay import Relay
from taskit.outbox.table import DEFAULT_NAME, outbox_table
from taskit.outbox.writer import Outbox, enqueue_in, schedule_in

__all__ = ["DEFAULT_NAME", "Outbox", "Relay", "enqueue_in", "outbox_table", "schedule_in"]
