"""The SQLite broker's tables, and the schema version a database file records.

One ``jobs`` table holds every job, live or finished: ``spec`` is what the job is (the encoded
``JobSpec``, written at enqueue; only a debounce replaces it, while the job waits) and the other
columns are where it stands (status, attempts, times, error, result, lease). A finished job is
marked in place (its ``expires`` set), not moved. ``rank`` orders jobs within their state: ready
jobs by (priority desc, rank), FIFO among equals (a job put back at the front gets a rank below
every other); dead letters by rank, oldest first. Partial indexes cover what each call looks up,
each holding the rows of one state.

A job held back by a full limit key is ``held`` (read back as PENDING, counted as queued) in
that key's line (``line``, ``line_seq``: see ``limits``); ``grp`` is the group a ready job
takes turns in (``fair``) and ``limit_keys`` the limit keys it needs, so neither is decoded
from its spec.

``counts`` keeps how many jobs each queue has in each status but the finished ones
(``completed``, ``failed``, ``cancelled``: nothing reads those), and how many ever completed or
failed (``total:<status>``), kept by triggers in the same transaction as the change: ``stats``
reads it in O(1) per queue. Its rows of the queue ``RANKS`` (``''``) are the two rank counters
(``moves``): every enqueue writes that table's page anyway, so the counters cost no page more.

The workflow tables (``_WORKFLOW_DDL``, used by ``workflows``): ``workflows`` (one row each:
its creation, how many nodes it has and how many have not ended, and when its record expires
once they all ended), ``wf_nodes`` (each node in the order it joined: what it waits for, how
many of those have not ended, its final status and result once it ended), ``wf_of`` (which
workflow a job is a node of), ``wf_waits`` (each waiting job by the parent it waits for) and
``wf_ends``: triggers write there, in the same transaction, every end of a job that is a node
(its status becoming final, or a waiting job deleted by a purge), for ``workflows`` to apply.

Ready jobs are in ``jobs_ready`` (those without a group in turn) or ``jobs_grouped`` and
``jobs_fair`` (those with one), so a plain job's enqueue and reserve write one index of ready
jobs, not two. Browsing (``browse``) walks each listing through indexes in its order:
``jobs_ready``, ``jobs_grouped`` and ``jobs_held`` (queued: ready, and held back in a limit's
line), ``jobs_waiting`` (scheduled, retrying: by due time), ``jobs_leases`` (running: by
deadline), ``jobs_deferred`` (deferred),
``jobs_ended`` (finished: by end time) and ``jobs_dead`` (dead letters: by rank, given as they
die); each index ends with ``seq`` (the rowid), which breaks ties. ``minutes`` holds the
per-minute counts (``tally``): one row per minute and queue, with one column per bucket of
``RUN_TIME_BOUNDS`` (``RUN_COLUMNS``; a change to the bounds is a change to the tables).

Conditions that a row's write evaluates (partial indexes, triggers' ``WHEN``) spell a set of
three statuses or more as ``=`` / ``!=`` terms, never ``IN (...)``: SQLite builds a temporary
b-tree for such a list each time it evaluates it (``OpenEphemeral`` in ``EXPLAIN``), where a
chain of comparisons costs a few instructions (docs/performance.md, the SQLite broker).

``ensure`` creates the tables in a new file and records ``VERSION``; it refuses a file written
by a newer taskit (``ConfigurationError`` naming both versions) rather than misread it.
"""

from __future__ import annotations

import sqlite3

from taskit.broker.browse import RUN_TIME_BOUNDS
from taskit.errors import ConfigurationError

__all__ = ["RANKS", "RUN_COLUMNS", "VERSION", "ensure"]

#: The schema this code reads and writes. Raise it with every change to the tables.
VERSION = 4
#: The ``queue`` of the two rows of ``counts`` that hold the rank counters (no queue has an
#: empty name): they share the page every enqueue writes anyway.
RANKS = ""
#: The columns of ``minutes`` counting run times, one per bucket of ``RUN_TIME_BOUNDS``.
RUN_COLUMNS = tuple(f"r{i}" for i in range(len(RUN_TIME_BOUNDS) + 1))

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    grp TEXT,
    limit_keys TEXT,
    line TEXT,
    line_seq INTEGER,
    due REAL,
    sched REAL,
    token TEXT,
    settled TEXT,
    deadline REAL,
    leased_at REAL,
    cancel INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    completed REAL,
    failed REAL,
    error TEXT,
    error_type TEXT,
    traceback TEXT,
    failures BLOB,
    result BLOB,
    progress BLOB,
    expires REAL,
    spec BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, priority DESC, rank)
    WHERE status = 'pending' AND grp IS NULL;
CREATE INDEX IF NOT EXISTS jobs_grouped ON jobs (queue, priority DESC, rank)
    WHERE status = 'pending' AND grp IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_fair ON jobs (queue, grp, rank)
    WHERE status = 'pending' AND grp IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_lines ON jobs (line, line_seq) WHERE status = 'held';
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due) WHERE status IN ('scheduled', 'retrying');
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (queue, deadline) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (queue, rank) WHERE status = 'dead_letter';
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires) WHERE expires IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_deferred ON jobs (queue) WHERE status = 'deferred';
CREATE INDEX IF NOT EXISTS jobs_held ON jobs (queue, priority DESC, rank) WHERE status = 'held';
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (queue, status, due, rank)
    WHERE status IN ('scheduled', 'retrying');
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs (queue, status, completed)
    WHERE status = 'completed' OR status = 'failed' OR status = 'cancelled';

CREATE TABLE IF NOT EXISTS counts (
    queue TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (queue, status)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS jobs_counted_in AFTER INSERT ON jobs
    WHEN new.status != 'completed' AND new.status != 'failed' AND new.status != 'cancelled' BEGIN
    INSERT INTO counts VALUES (new.queue, new.status, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_counted_out AFTER DELETE ON jobs
    WHEN old.status != 'completed' AND old.status != 'failed' AND old.status != 'cancelled' BEGIN
    UPDATE counts SET n = n - 1 WHERE queue = old.queue AND status = old.status;
END;
CREATE TRIGGER IF NOT EXISTS jobs_counted_from AFTER UPDATE OF status ON jobs
    WHEN old.status != new.status AND old.status != 'completed' AND old.status != 'failed'
    AND old.status != 'cancelled' BEGIN
    UPDATE counts SET n = n - 1 WHERE queue = old.queue AND status = old.status;
END;
CREATE TRIGGER IF NOT EXISTS jobs_counted_to AFTER UPDATE OF status ON jobs
    WHEN old.status != new.status AND new.status != 'completed' AND new.status != 'failed'
    AND new.status != 'cancelled' BEGIN
    INSERT INTO counts VALUES (new.queue, new.status, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_counted_total AFTER UPDATE OF status ON jobs
    WHEN old.status != new.status AND new.status IN ('completed', 'failed') BEGIN
    INSERT INTO counts VALUES (new.queue, 'total:' || new.status, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;

CREATE TABLE IF NOT EXISTS minutes (
    minute INTEGER NOT NULL, queue TEXT NOT NULL,
    enqueued INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0, retried INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0, cancelled INTEGER NOT NULL DEFAULT 0,
    <run columns>,
    PRIMARY KEY (minute, queue)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS paused (queue TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS onces (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS onces_expiry ON onces (expires);
CREATE TABLE IF NOT EXISTS beats (
    name TEXT PRIMARY KEY, record BLOB NOT NULL, expires REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS stream_entries (
    stream TEXT NOT NULL, n INTEGER NOT NULL, entry BLOB NOT NULL, PRIMARY KEY (stream, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_groups (
    stream TEXT NOT NULL, grp TEXT NOT NULL, read_to INTEGER NOT NULL,
    PRIMARY KEY (stream, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_pending (
    stream TEXT NOT NULL, grp TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (stream, grp, n)
) WITHOUT ROWID;
"""

# Flow control: fair turns (``fair``), limits (``limits``) and dedup windows (``dedup``).
# ``turns`` is each queue's rotation over its groups with ready jobs (``grp`` '' for the
# ungrouped jobs' turn), its next turn the highest ``pos``; the triggers put a group in when a
# job of it becomes ready and take it out with its last ready job, whatever the call.
_FLOW_DDL = """
CREATE TABLE IF NOT EXISTS turns (
    queue TEXT NOT NULL, grp TEXT NOT NULL, pos INTEGER NOT NULL, PRIMARY KEY (queue, grp)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS turns_order ON turns (queue, pos);
CREATE TRIGGER IF NOT EXISTS jobs_turn_new AFTER INSERT ON jobs
    WHEN new.status = 'pending' AND new.grp IS NOT NULL BEGIN
    INSERT INTO turns SELECT new.queue, '', 0
        WHERE NOT EXISTS (SELECT 1 FROM turns WHERE queue = new.queue);
    INSERT INTO turns SELECT new.queue, new.grp,
        (SELECT min(pos) FROM turns WHERE queue = new.queue) - 1 WHERE true
        ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER IF NOT EXISTS jobs_turn_in AFTER UPDATE OF status ON jobs
    WHEN new.status = 'pending' AND old.status != 'pending' AND new.grp IS NOT NULL BEGIN
    INSERT INTO turns SELECT new.queue, '', 0
        WHERE NOT EXISTS (SELECT 1 FROM turns WHERE queue = new.queue);
    INSERT INTO turns SELECT new.queue, new.grp,
        (SELECT min(pos) FROM turns WHERE queue = new.queue) - 1 WHERE true
        ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER IF NOT EXISTS jobs_turn_out AFTER UPDATE OF status ON jobs
    WHEN old.status = 'pending' AND new.status != 'pending' AND old.grp IS NOT NULL BEGIN
    DELETE FROM turns WHERE queue = old.queue AND grp = old.grp AND NOT EXISTS (
        SELECT 1 FROM jobs WHERE status = 'pending' AND queue = old.queue AND grp = old.grp);
    DELETE FROM turns WHERE queue = old.queue AND grp = ''
        AND (SELECT count(*) FROM turns WHERE queue = old.queue) = 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_turn_gone AFTER DELETE ON jobs
    WHEN old.status = 'pending' AND old.grp IS NOT NULL BEGIN
    DELETE FROM turns WHERE queue = old.queue AND grp = old.grp AND NOT EXISTS (
        SELECT 1 FROM jobs WHERE status = 'pending' AND queue = old.queue AND grp = old.grp);
    DELETE FROM turns WHERE queue = old.queue AND grp = ''
        AND (SELECT count(*) FROM turns WHERE queue = old.queue) = 1;
END;

CREATE TABLE IF NOT EXISTS limit_specs (name TEXT PRIMARY KEY, spec BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slots (
    key TEXT NOT NULL, job TEXT NOT NULL, PRIMARY KEY (key, job)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS slots_job ON slots (job);
CREATE TABLE IF NOT EXISTS rates (key TEXT PRIMARY KEY, tat REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rates_tat ON rates (tat);

CREATE TABLE IF NOT EXISTS windows (
    key TEXT PRIMARY KEY, job TEXT NOT NULL, until REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS windows_until ON windows (until);
"""

#: The workflow tables (see the docstring), apart from the core's.
_WORKFLOW_DDL = """
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY, created REAL NOT NULL, nodes INTEGER NOT NULL, open INTEGER NOT NULL,
    expires REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS workflows_expiry ON workflows (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS wf_nodes (
    workflow TEXT NOT NULL, job TEXT NOT NULL, ord INTEGER NOT NULL, task TEXT NOT NULL,
    queue TEXT NOT NULL, after BLOB, continues INTEGER NOT NULL, ttl REAL,
    waiting INTEGER NOT NULL, status TEXT, result BLOB,
    PRIMARY KEY (workflow, job)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS wf_nodes_order ON wf_nodes (workflow, ord);
CREATE TABLE IF NOT EXISTS wf_of (job TEXT PRIMARY KEY, workflow TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS wf_of_workflow ON wf_of (workflow);
CREATE TABLE IF NOT EXISTS wf_waits (
    workflow TEXT NOT NULL, parent TEXT NOT NULL, child TEXT NOT NULL,
    PRIMARY KEY (workflow, parent, child)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wf_ends (
    seq INTEGER PRIMARY KEY, job TEXT NOT NULL, status TEXT NOT NULL, gone INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS jobs_wf_ended AFTER UPDATE OF status ON jobs
    WHEN (new.status = 'completed' OR new.status = 'failed' OR new.status = 'cancelled'
        OR new.status = 'dead_letter') AND old.status != 'completed' AND old.status != 'failed'
    AND old.status != 'cancelled' AND old.status != 'dead_letter' BEGIN
    INSERT INTO wf_ends (job, status, gone) SELECT new.id, new.status, 0
        WHERE EXISTS (SELECT 1 FROM wf_of WHERE job = new.id);
END;
CREATE TRIGGER IF NOT EXISTS jobs_wf_deleted AFTER DELETE ON jobs
    WHEN old.status = 'pending' OR old.status = 'held' OR old.status = 'scheduled'
    OR old.status = 'retrying' OR old.status = 'deferred' BEGIN
    INSERT INTO wf_ends (job, status, gone) SELECT old.id, 'cancelled', 1
        WHERE EXISTS (SELECT 1 FROM wf_of WHERE job = old.id);
END;
"""

# A file of an older schema: what versions 3 and 4 changed goes first (the triggers and indexes
# they redefined, the rank counters moved from ``meta`` into ``counts``, and no count of
# finished jobs kept); the DDL then makes them anew.
_BEFORE_4 = """
DROP TRIGGER IF EXISTS jobs_counted_in;
DROP TRIGGER IF EXISTS jobs_counted_out;
DROP TRIGGER IF EXISTS jobs_counted_move;
DROP TRIGGER IF EXISTS jobs_counted_from;
DROP TRIGGER IF EXISTS jobs_counted_to;
DROP TRIGGER IF EXISTS jobs_counted_total;
DROP TRIGGER IF EXISTS jobs_wf_ended;
DROP TRIGGER IF EXISTS jobs_wf_deleted;
DROP INDEX IF EXISTS jobs_ended;
DROP INDEX IF EXISTS jobs_ready;
DROP INDEX IF EXISTS jobs_plain;
DROP INDEX IF EXISTS jobs_queue;
DELETE FROM counts WHERE status IN ('completed', 'failed', 'cancelled');
INSERT OR IGNORE INTO counts SELECT '', key, value FROM meta WHERE key IN ('back', 'front');
DELETE FROM meta WHERE key IN ('back', 'front');
"""


def ensure(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables if the file has none, and check its schema version: call inside a
    write transaction. ``ConfigurationError`` for a file of a newer schema than ``VERSION``."""
    found = _version(conn)
    if found is not None and found > VERSION:
        raise ConfigurationError(
            f"SQLite broker database {path!r} has schema version {found}, newer than this "
            f"taskit's {VERSION}: upgrade taskit to use it (it is left untouched)"
        )
    if found == VERSION:
        return
    if found is not None and found < 4:
        for statement in _statements(_BEFORE_4):
            conn.execute(statement)
    runs = ", ".join(f"{column} INTEGER NOT NULL DEFAULT 0" for column in RUN_COLUMNS)
    for statement in _statements(_DDL.replace("<run columns>", runs) + _FLOW_DDL + _WORKFLOW_DDL):
        conn.execute(statement)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (VERSION,))
    for counter in ("back", "front"):
        conn.execute("INSERT OR IGNORE INTO counts VALUES (?, ?, 0)", (RANKS, counter))


def _version(conn: sqlite3.Connection) -> int | None:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if exists is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def _statements(script: str) -> list[str]:
    """``script`` split into whole statements (a trigger's body keeps its inner ``;``)."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    return out
