"""Limits on SQLite (``taskit.limits``; see ``Broker.set_limits``, "How limits hold jobs"):
definitions, slots, lines of held-back jobs and rate buckets, each step inside the caller's
transaction (``Tx``). The same model as the memory broker's ``LimitBook`` and the Redis
broker's ``lua/_limits.lua``.

Tables: ``limit_specs`` (name -> the encoded ``LimitSpec``), ``slots`` (limit key, id of a job
holding one of its slots while it is leased) and ``rates`` (rate limit key -> its theoretical
arrival time, GCRA; keys idle past ``CATCH_UP`` are deleted, as a missing key means the same).
A job's limit keys are in its ``limit_keys`` column (NUL-joined), so no step decodes its spec
for them. A job held back by a full key is ``held`` (read back as PENDING, counted as queued):
``line`` names the key, ``line_seq`` its place (FIFO by when it was first held back, kept until
it starts, so a job that has to wait again keeps its place).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from taskit.broker.sqlite.moves import back_ranks, front_ranks
from taskit.broker.sqlite.records import shown_time
from taskit.broker.sqlite.store import Tx
from taskit.limits import LimitSpec, LimitUsage, limit_name

__all__ = [
    "CATCH_UP",
    "HOLD_CAP",
    "gate",
    "join_keys",
    "release",
    "set_specs",
    "specs",
    "usage",
]

#: Jobs one reserve call may hold back (wait or delay) before it stops looking.
HOLD_CAP = 100
#: Seconds: a start later than this past its key's arrival time counts from now.
CATCH_UP = 1.0

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(LimitSpec)


def join_keys(keys: tuple[str, ...]) -> str | None:
    """The ``limit_keys`` column of a job needing ``keys`` (None: none)."""
    return "\0".join(keys) if keys else None


def _spec(tx: Tx, name: str) -> LimitSpec | None:
    row = tx.conn.execute("SELECT spec FROM limit_specs WHERE name = ?", (name,)).fetchone()
    return None if row is None else _DECODER.decode(row[0])


def _in_use(tx: Tx, key: str) -> int:
    (n,) = tx.conn.execute("SELECT count(*) FROM slots WHERE key = ?", (key,)).fetchone()
    return int(n)


def gate(tx: Tx, seq: int, job_id: str, keys: str) -> bool:
    """Whether popped pending job ``seq`` (``job_id``, limit keys ``keys``) may start now, all
    or none: True, it holds a slot of each concurrency key and a start of each rate key. Else
    it is held back, no attempt spent: ``held`` in the line of its first full key, or
    SCHEDULED until its rates allow a start."""
    wanted = [(key, _spec(tx, limit_name(key))) for key in dict.fromkeys(keys.split("\0"))]
    due: float | None = None
    starts: list[tuple[str, float]] = []
    for key, spec in wanted:
        if spec is None:
            continue  # no definition stored: the limit does not hold the job back
        if spec.concurrency is not None and _in_use(tx, key) >= spec.concurrency:
            _wait(tx, seq, key)
            return False
        if spec.rate is not None:
            allowed, tat = _allowed_at(tx, key, spec)
            if allowed > tx.now:
                due = allowed if due is None else max(due, allowed)
            starts.append((key, tat))
    if due is not None:
        sched = shown_time(due)
        tx.conn.execute(
            "UPDATE jobs SET status = 'scheduled', due = ?, sched = ? WHERE seq = ?",
            (sched, sched, seq),
        )
        return False
    for key, spec in wanted:
        if spec is not None and spec.concurrency is not None:
            tx.conn.execute("INSERT OR IGNORE INTO slots VALUES (?, ?)", (key, job_id))
    if starts:
        _sweep_rates(tx)
        tx.conn.executemany("INSERT OR REPLACE INTO rates VALUES (?, ?)", starts)
    tx.conn.execute("UPDATE jobs SET line_seq = NULL, line = NULL WHERE seq = ?", (seq,))
    return True


def _allowed_at(tx: Tx, key: str, spec: LimitSpec) -> tuple[float, float]:
    """When ``key`` allows its next start (GCRA: one start every ``per / rate`` seconds, up to
    ``bucket`` at once after an idle time), and its arrival time after a start now: counted
    from its stored time when now is less than one interval (and ``CATCH_UP``) past it, so a
    worker that wakes a little late does not push every later start back."""
    assert spec.rate is not None
    assert spec.bucket is not None
    now = tx.now
    interval = spec.per / spec.rate
    row = tx.conn.execute("SELECT tat FROM rates WHERE key = ?", (key,)).fetchone()
    stored = now if row is None else float(row[0])
    tat = max(stored, now)
    start = stored if stored < now and now - stored < min(interval, CATCH_UP) else tat
    return tat - (spec.bucket - 1) * interval, start + interval


def _sweep_rates(tx: Tx) -> None:
    tx.conn.execute(
        "DELETE FROM rates WHERE key IN (SELECT key FROM rates WHERE tat < ? ORDER BY tat "
        "LIMIT 10)",
        (tx.now - CATCH_UP,),
    )


def _wait(tx: Tx, seq: int, key: str) -> None:
    """Job ``seq`` waits in ``key``'s line: at its old place if it waited before, else last."""
    (place,) = back_ranks(tx, 1)
    tx.conn.execute(
        "UPDATE jobs SET status = 'held', line = ?, line_seq = coalesce(line_seq, ?) WHERE seq = ?",
        (key, place, seq),
    )


def release(tx: Tx, job_id: str) -> list[str]:
    """Job ``job_id`` stops holding slots (a settle, any kind; an end while leased): the jobs
    waiting for the slots it frees go back to the front of their queues (at most one per
    slot). Answers their ids, in the order they are next."""
    keys = [k for (k,) in tx.conn.execute("DELETE FROM slots WHERE job = ? RETURNING key",
                                          (job_id,))]  # fmt: skip
    freed: list[str] = []
    for key in sorted(keys):
        freed += _free(tx, key, 1)
    return freed


def _free(tx: Tx, key: str, most: int | None) -> list[str]:
    """Up to ``most`` (None: as many as the slots allow) jobs of ``key``'s line, first in line
    first, back at the front of their queues: only while ``key`` has a free slot (or no
    concurrency any more)."""
    spec = _spec(tx, limit_name(key))
    room = -1  # no limit
    if spec is not None and spec.concurrency is not None:
        room = max(spec.concurrency - _in_use(tx, key), 0)
    if most is not None:
        room = most if room < 0 else min(room, most)
    if room == 0:
        return []
    rows = tx.conn.execute(
        "SELECT seq, id FROM jobs WHERE status = 'held' AND line = ? ORDER BY line_seq LIMIT ?",
        (key, room),
    ).fetchall()
    if not rows:
        return []
    ranks = front_ranks(tx, len(rows))
    tx.conn.executemany(
        "UPDATE jobs SET status = 'pending', line = NULL, rank = ? WHERE seq = ?",
        [(rank, seq) for rank, (seq, _) in zip(ranks, rows, strict=True)],
    )
    tx.ready = True
    return [job_id for _, job_id in rows]


def set_specs(tx: Tx, given: Mapping[str, LimitSpec | None], only_new: bool) -> list[str]:
    """See ``Broker.set_limits``: answers the held-back jobs the change let out (back at the
    front of their queues), in the order they are next."""
    changed: list[str] = []
    for name, spec in given.items():
        if only_new and _spec(tx, name) is not None:
            continue
        if spec is None:
            tx.conn.execute("DELETE FROM limit_specs WHERE name = ?", (name,))
        else:
            tx.conn.execute(
                "INSERT OR REPLACE INTO limit_specs VALUES (?, ?)", (name, _ENCODER.encode(spec))
            )
        changed.append(name)
    freed: list[str] = []
    for name in changed:
        for key in _lines_of(tx, name):
            freed += _free(tx, key, None)
    return freed


def specs(tx: Tx) -> dict[str, LimitSpec]:
    """Every stored definition by name."""
    rows = tx.conn.execute("SELECT name, spec FROM limit_specs ORDER BY name")
    return {name: _DECODER.decode(spec) for name, spec in rows}


def usage(tx: Tx, name: str, top: int) -> LimitUsage:
    """See ``Broker.limit_usage``."""
    mine = (name, name, name, top)
    running = tx.conn.execute(
        f"SELECT key, count(*) FROM slots WHERE {_mine('key')} "
        "GROUP BY key ORDER BY count(*) DESC, key LIMIT ?",
        mine,
    )
    waiting = tx.conn.execute(
        f"SELECT line, count(*) FROM jobs WHERE status = 'held' AND {_mine('line')} "
        "GROUP BY line ORDER BY count(*) DESC, line LIMIT ?",
        mine,
    )
    return LimitUsage(
        name=name,
        spec=_spec(tx, name),
        running={key: int(n) for key, n in running},
        waiting={key: int(n) for key, n in waiting},
    )


def _lines_of(tx: Tx, name: str) -> list[str]:
    """The limit keys of limit ``name`` with jobs in line."""
    sql = f"SELECT DISTINCT line FROM jobs WHERE status = 'held' AND {_mine('line')}"
    return [key for (key,) in tx.conn.execute(sql, (name, name, name))]


def _mine(column: str) -> str:
    """The SQL condition of a limit key in ``column`` of the limit named by the next three
    ``?``: the name itself, or the name, ``:`` and a key (text from ``name:`` to ``name;``)."""
    return f"({column} = ? OR ({column} >= ? || ':' AND {column} < ? || ';'))"
