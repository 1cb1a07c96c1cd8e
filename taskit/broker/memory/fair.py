"""Fair turns of one queue on the memory broker: its ready jobs of the default priority that
have a group (``Job.group``), served in turns over the groups, as the Redis broker does.

``order`` is the rotation, its next turn at the right end: a taken turn moves to the left end
(as RPOPLPUSH does on Redis). ``None`` stands for the queue's ungrouped jobs, which take one
turn like a group; it is in the rotation while any group is. A group enters at the left end (it
waits one full round) or, for a job put back at the front (a release, a retry at once), at the
right end (its turn is next); it leaves when its last ready job is taken or removed.
"""

from __future__ import annotations

import heapq
from collections import deque

__all__ = ["Turns"]


class Turns:
    """The grouped ready jobs of one queue (see the module docstring). Entries are
    ``(seq, job id)`` per group, taken lowest ``seq`` first (a front entry's is negative)."""

    __slots__ = ("groups", "order")

    def __init__(self) -> None:
        self.groups: dict[str, list[tuple[int, str]]] = {}
        self.order: deque[str | None] = deque()

    def __bool__(self) -> bool:
        return bool(self.order)

    def add(self, group: str, seq: int, job_id: str, *, front: bool) -> None:
        """Job ``job_id`` is ready in ``group`` at ``seq``."""
        entries = self.groups.get(group)
        if entries is None:
            entries = self.groups[group] = []
            if not self.order:
                self.order.append(None)
            if front:
                self.order.append(group)
            else:
                self.order.appendleft(group)
        heapq.heappush(entries, (seq, job_id))

    def remove(self, group: str, job_id: str) -> None:
        """Job ``job_id`` is no longer ready (cancelled, purged)."""
        entries = self.groups.get(group)
        if entries is None:
            return
        entries[:] = [e for e in entries if e[1] != job_id]
        heapq.heapify(entries)
        if not entries:
            del self.groups[group]
            self.order.remove(group)
            self._settle()

    def rotate(self) -> str | None:
        """The group whose turn it is (``None``: the ungrouped jobs'); its turn moves to last."""
        turn = self.order.pop()
        self.order.appendleft(turn)
        return turn

    def take(self, group: str) -> str:
        """The next job id of ``group``, whose turn it just was (``rotate``), taken out."""
        entries = self.groups[group]
        _, job_id = heapq.heappop(entries)
        if not entries:
            del self.groups[group]
            self.order.popleft()  # the turn just rotated to the left end
            self._settle()
        return job_id

    def _settle(self) -> None:
        if len(self.order) == 1:  # only the ungrouped turn is left: no rotation
            self.order.clear()
