"""Fair turns on SQLite (``Job.group``, see "Fair queues" in ``taskit.broker.base``): which
ready job of a queue a reserve takes next, and groups put back at the front.

A ready job of the default priority that has a group carries it in the ``grp`` column (other
jobs carry NULL: their group does not count). ``turns`` holds each queue's rotation over its
groups with ready jobs, its next turn the highest ``pos``; ``''`` is the ungrouped jobs' turn,
in the rotation while any group is. The schema's triggers keep it whatever the call: a group
enters at the lowest ``pos`` (it waits one round) when a job of it becomes ready, and leaves
with its last ready job (the ungrouped turn with the last group). ``front`` moves a group that
a job put back at the front just brought in to the next turn, as the memory broker does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskit.broker.sqlite.records import COLUMNS
from taskit.broker.sqlite.store import Tx

__all__ = ["front", "group_of", "pick"]

#: What ``pick`` answers per job: its ``seq``, limit keys (NUL-joined, or None) and its row
#: as ``COLUMNS`` read it (the lease is built from it: the ``UPDATE`` returns nothing).
Pick = tuple[Any, ...]

_PICKED = f"seq, limit_keys, {COLUMNS}"
_PLAIN = (
    f"SELECT priority, {_PICKED} FROM jobs WHERE status = 'pending' AND queue = ? "
    "AND grp IS NULL ORDER BY priority DESC, rank LIMIT ?"
)
# A queue without groups in turn has no ready job with a group: its ready jobs are all here.
# Neither paused nor in turns: the common case, one statement (an empty answer: look again).
_FREE = (
    f"SELECT {_PICKED} FROM jobs WHERE status = 'pending' AND queue = ?1 AND grp IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM paused WHERE queue = ?1) "
    "AND NOT EXISTS (SELECT 1 FROM turns WHERE queue = ?1) ORDER BY priority DESC, rank LIMIT ?2"
)
# Every ready job, grouped or not (a damaged rotation: no index gives this order).
_ANY = (
    f"SELECT {_PICKED} FROM jobs WHERE status = 'pending' AND queue = ? "
    "ORDER BY priority DESC, rank LIMIT ?"
)
_OF_GROUP = (
    f"SELECT {_PICKED} FROM jobs WHERE status = 'pending' AND queue = ? AND grp = ? "
    "ORDER BY rank LIMIT 1"
)


def group_of(group: str | None, priority: int) -> str | None:
    """The ``grp`` column of a job: its group if it takes turns (the default priority)."""
    return group if priority == 0 else None


def pick(tx: Tx, queue: str, most: int) -> list[Pick]:
    """The next ready jobs of ``queue`` in the order a reserve takes them, up to ``most``:
    higher priorities first, then the default priority in turns (one job a turn), then lower
    ones. A queue with groups in turn answers one job a call (its turn moved to last); a
    paused queue, none."""
    free: list[Pick] = tx.conn.execute(_FREE, (queue, most)).fetchall()
    if free:
        return free
    if tx.conn.execute("SELECT 1 FROM paused WHERE queue = ?", (queue,)).fetchone() is not None:
        return []
    if tx.conn.execute("SELECT 1 FROM turns WHERE queue = ?", (queue,)).fetchone() is None:
        return []  # no ready job: ``_FREE`` would have found it
    top = tx.conn.execute(_PLAIN, (queue, 1)).fetchone()
    if top is not None and top[0] > 0:
        return [top[1:]]
    while True:
        row = tx.conn.execute(
            "SELECT grp, pos FROM turns WHERE queue = ? ORDER BY pos DESC LIMIT 1", (queue,)
        ).fetchone()
        if row is None:  # every group left (a damaged rotation): the rest in plain order
            return list(tx.conn.execute(_ANY, (queue, most)))
        group = row[0]
        _to_last(tx, queue, group)
        if group == "":
            if top is not None and top[0] == 0:
                return [top[1:]]
            continue  # no ungrouped job of the default priority: the next turn
        found = tx.conn.execute(_OF_GROUP, (queue, group)).fetchone()
        if found is not None:
            return [found]
        _leave(tx, queue, group)  # in turn without a ready job: cannot be, but never spin on it


def front(tx: Tx, job_ids: Sequence[str]) -> None:
    """Jobs ``job_ids`` were just made ready at the front of their priority (the first is the
    next): a group they brought into the rotation (all its ready jobs are among them) takes
    the next turn, the first job's group before the others'."""
    if not job_ids:
        return
    marks = ", ".join("?" * len(job_ids))
    rows = tx.conn.execute(
        f"SELECT id, queue, grp FROM jobs WHERE id IN ({marks}) AND status = 'pending' "
        "AND grp IS NOT NULL",
        tuple(job_ids),
    ).fetchall()
    where = {job_id: (queue, group) for job_id, queue, group in rows}
    brought: dict[tuple[str, str], int] = {}
    for ready_in in where.values():
        brought[ready_in] = brought.get(ready_in, 0) + 1
    moved: set[tuple[str, str]] = set()
    for job_id in reversed(job_ids):  # the last first: the first ends up next
        place = where.get(job_id)
        if place is None or place in moved:
            continue
        moved.add(place)
        queue, group = place
        (ready,) = tx.conn.execute(
            "SELECT count(*) FROM jobs WHERE status = 'pending' AND queue = ? AND grp = ?",
            place,
        ).fetchone()
        if ready == brought[place]:  # it was idle: its turn is next
            tx.conn.execute(
                "UPDATE turns SET pos = (SELECT max(pos) FROM turns WHERE queue = ?) + 1 "
                "WHERE queue = ? AND grp = ?",
                (queue, queue, group),
            )


def _to_last(tx: Tx, queue: str, group: str) -> None:
    tx.conn.execute(
        "UPDATE turns SET pos = (SELECT min(pos) FROM turns WHERE queue = ?) - 1 "
        "WHERE queue = ? AND grp = ?",
        (queue, queue, group),
    )


def _leave(tx: Tx, queue: str, group: str) -> None:
    tx.conn.execute("DELETE FROM turns WHERE queue = ? AND grp = ?", (queue, group))
    tx.conn.execute(
        "DELETE FROM turns WHERE queue = ? AND grp = '' "
        "AND (SELECT count(*) FROM turns WHERE queue = ?) = 1",
        (queue, queue),
    )
