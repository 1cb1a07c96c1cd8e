"""The memory broker's limits (``taskit.limits``): slots, waiting lines and rate buckets.

The same model as the Redis broker's ``lua/_limits.lua``, kept in plain Python structures. A
``LimitBook`` knows nothing of records or queues: ``MemoryState`` asks it whether a popped job may
start (``gate``), tells it when a job stops holding slots (``release``) or leaves the broker
(``forget``), and puts back at the front of their queues the job ids it answers as freed. Call
every method with the state's lock held.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping

from taskit.limits import LimitSpec, LimitUsage, limit_name

__all__ = ["HOLD_CAP", "LimitBook"]

#: Jobs one reserve call may hold back (wait or delay) before it stops looking: the scan past
#: held-back jobs is bounded, as in the Redis script (``HOLD_CAP`` there).
HOLD_CAP = 100

#: What ``gate`` answers: ("go", None), ("wait", the full limit key), ("later", due time).
Verdict = tuple[str, str | float | None]


#: Seconds: a start later than this past its key's arrival time counts from now (as on Redis,
#: where rate keys idle that long are swept).
CATCH_UP = 1.0


class LimitBook:
    """Limit definitions and their live state: which jobs hold a slot of each limit key, which
    wait for one (FIFO by the sequence number each got when first held back), and each rate
    limit key's theoretical arrival time (GCRA)."""

    def __init__(self) -> None:
        self.specs: dict[str, LimitSpec] = {}
        self._holding: dict[str, set[str]] = {}  # limit key -> ids holding a slot
        self._waiting: dict[str, list[tuple[int, str]]] = {}  # limit key -> sorted (seq, id)
        self._seqs: dict[str, int] = {}  # id -> its place in line, kept until it starts
        self._waits_on: dict[str, str] = {}  # id -> the limit key it waits for
        self._tat: dict[str, float] = {}  # rate limit key -> theoretical arrival time (s)

    # -- reserve -------------------------------------------------------------------------------
    def gate(self, job_id: str, keys: Iterable[str], now: float) -> Verdict:
        """Whether job ``job_id`` needing ``keys`` may start at ``now``: all or none. "go": it
        took a slot in each concurrency key and a start in each rate key; "wait": a
        concurrency key is full (the first such, nothing taken); "later": a rate key allows
        its next start only at the time answered (nothing taken)."""
        wanted = [(key, self.specs.get(limit_name(key))) for key in keys]
        due: float | None = None
        for key, spec in wanted:
            if spec is None:
                continue  # no definition stored: the limit does not hold the job back
            if spec.concurrency is not None and len(self._holding.get(key, ())) >= spec.concurrency:
                return "wait", key
            if spec.rate is not None:
                allowed = self._allowed_at(key, spec, now)
                if allowed > now:
                    due = allowed if due is None else max(due, allowed)
        if due is not None:
            return "later", due
        for key, spec in wanted:
            if spec is not None and spec.concurrency is not None:
                self._holding.setdefault(key, set()).add(job_id)
            if spec is not None and spec.rate is not None:
                self._tat[key] = self._counted_from(key, spec, now) + spec.per / spec.rate
        self._seqs.pop(job_id, None)
        return "go", None

    def _allowed_at(self, key: str, spec: LimitSpec, now: float) -> float:
        """When ``key`` allows its next start (GCRA: one start every ``per / rate`` seconds,
        up to ``bucket`` at once after an idle time)."""
        interval = spec.per / spec.rate  # type: ignore[operator]
        tat = max(self._tat.get(key, now), now)
        return tat - (spec.bucket - 1) * interval  # type: ignore[operator]

    def _counted_from(self, key: str, spec: LimitSpec, now: float) -> float:
        """The time a start of ``key`` at ``now`` counts from: its arrival time when ``now`` is
        less than one interval (and under ``CATCH_UP`` seconds) past it, so a worker that wakes
        a little late does not push every later start back (lateness does not add up); else
        ``now`` or the arrival time, whichever is later."""
        stored = self._tat.get(key, now)
        interval = spec.per / spec.rate  # type: ignore[operator]
        if stored < now and now - stored < min(interval, CATCH_UP):
            return stored
        return max(stored, now)

    def wait(self, job_id: str, key: str, next_seq: Callable[[], int]) -> None:
        """Put ``job_id`` in ``key``'s line: at its old place if it waited before, else last."""
        seq = self._seqs.setdefault(job_id, next_seq())
        bisect.insort(self._waiting.setdefault(key, []), (seq, job_id))
        self._waits_on[job_id] = key

    # -- release ----------------------------------------------------------------------------
    def release(self, job_id: str, keys: Iterable[str]) -> list[str]:
        """Free ``job_id``'s slots; answers the waiting jobs that may now be tried again (at
        most one per freed slot), taken out of their lines."""
        freed: list[str] = []
        for key in dict.fromkeys(keys):
            holders = self._holding.get(key)
            if holders is None or job_id not in holders:
                continue
            holders.discard(job_id)
            if not holders:
                del self._holding[key]
            freed += self._free(key, 1)
        return freed

    def forget(self, job_id: str, keys: Iterable[str]) -> list[str]:
        """``job_id`` leaves the broker (cancelled, purged, deleted): out of any line, its
        slots freed (answers the jobs freed, as ``release``)."""
        self._seqs.pop(job_id, None)
        key = self._waits_on.pop(job_id, None)
        if key is not None:
            line = self._waiting[key]
            line.remove(next(entry for entry in line if entry[1] == job_id))
            if not line:
                del self._waiting[key]
        return self.release(job_id, keys)

    def _free(self, key: str, most: int | None) -> list[str]:
        """Up to ``most`` (None: as many as the slots allow) waiting jobs of ``key``, out of
        its line: only while ``key`` has a free slot (or no concurrency any more)."""
        line = self._waiting.get(key)
        if not line:
            return []
        spec = self.specs.get(limit_name(key))
        room = len(line)
        if spec is not None and spec.concurrency is not None:
            room = max(spec.concurrency - len(self._holding.get(key, ())), 0)
        if most is not None:
            room = min(room, most)
        out = [job_id for _, job_id in line[:room]]
        del line[:room]
        if not line:
            del self._waiting[key]
        for job_id in out:
            del self._waits_on[job_id]
        return out

    # -- definitions and reports -----------------------------------------------------------
    def set(self, specs: Mapping[str, LimitSpec | None], *, only_new: bool) -> list[str]:
        """Store ``specs`` (None: delete); answers the waiting jobs the change frees."""
        changed = []
        for name, spec in specs.items():
            if only_new and name in self.specs:
                continue
            if spec is None:
                self.specs.pop(name, None)
            else:
                self.specs[name] = spec
            changed.append(name)
        freed: list[str] = []
        for key in [k for k in self._waiting if limit_name(k) in changed]:
            freed += self._free(key, None)
        return freed

    def usage(self, name: str, top: int) -> LimitUsage:
        """``name``'s definition and its ``top`` busiest keys (running and waiting)."""

        def busiest(counts: dict[str, int]) -> dict[str, int]:
            return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top])

        def mine(table: Mapping[str, object]) -> list[str]:
            return [k for k in table if limit_name(k) == name]

        return LimitUsage(
            name=name,
            spec=self.specs.get(name),
            running=busiest({k: len(self._holding[k]) for k in mine(self._holding)}),
            waiting=busiest({k: len(self._waiting[k]) for k in mine(self._waiting)}),
        )

    def in_use(self) -> int:
        """Slots held in all (tests: back to 0 when nothing runs)."""
        return sum(len(holders) for holders in self._holding.values())

    def waiting_count(self) -> int:
        """Jobs waiting in all lines."""
        return len(self._waits_on)
