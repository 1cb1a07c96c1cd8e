"""Flow control in the memory broker: paused queues and dedup windows (``taskit.dedup``),
kept as the Redis broker keeps them (``{p}:paused``, ``{p}:dedup`` and ``{p}:dedup:until``).
Methods whose name starts with ``_`` must be called with the lock held."""

from __future__ import annotations

import msgspec

from taskit.broker.checks import check_queue, kept_or_expired
from taskit.broker.memory.state import MemoryState, copy_job
from taskit.broker.memory.wakeup import wake_all
from taskit.clock import Clock
from taskit.config import DEFAULT_RESULT_TTL
from taskit.job import Job, JobStatus, kept_job

__all__ = ["DedupWindows", "FlowState"]


class DedupWindows:
    """Dedup key -> (kept job id, end of its window, broker seconds). Ended windows are
    forgotten whenever their number has doubled since the last sweep (amortised O(1))."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[str, float]] = {}
        self._kept_after_sweep = 0

    def kept(self, key: str, now: float) -> str | None:
        """The id of the job ``key``'s open window kept, or None (no window, or it ended)."""
        found = self._windows.get(key)
        if found is None or found[1] <= now:
            return None
        return found[0]

    def start(self, key: str, job_id: str, until: float, now: float) -> None:
        """Open (or move) ``key``'s window: it keeps ``job_id`` until ``until``."""
        self._windows[key] = (job_id, until)
        if len(self._windows) > 2 * self._kept_after_sweep + 64:
            for old in [k for k, (_, end) in self._windows.items() if end <= now]:
                del self._windows[old]
            self._kept_after_sweep = len(self._windows)


class FlowState(MemoryState):
    """The memory state with the paused queues and the dedup windows."""

    def __init__(
        self, *, clock: Clock | None = None, result_ttl: float = DEFAULT_RESULT_TTL
    ) -> None:
        super().__init__(clock=clock, result_ttl=result_ttl)
        self._paused: set[str] = set()
        self._windows = DedupWindows()

    def _deduped(self, job: Job, now: float, delay: float) -> Job | None:
        """What ``job`` (with a dedup window, due after ``delay``) is answered with instead of
        being stored, or None: store it. A throttle's open window answers its kept job; a
        debounce's open window whose kept job is still scheduled in the same queue gives that
        job ``job``'s spec and moves it to its new due time (see enqueue-n.lua)."""
        assert job.dedup is not None
        kept_id = self._windows.kept(job.dedup.key, now)
        if kept_id is None:
            return None
        record = self._records.get(kept_id)
        if job.dedup.mode == "throttle":
            found = None if record is None else copy_job(record.job)
            return kept_or_expired(found, kept_id, job.queue)
        if record is None or record.job.status is not JobStatus.SCHEDULED:
            return None
        if record.job.queue != job.queue:
            return None
        due = now + delay
        if job.scheduled_at is not None:
            due = max(due, job.scheduled_at.timestamp())
        old = record.job
        record.job = msgspec.structs.replace(
            job, id=kept_id, status=old.status, attempts=old.attempts
        )
        self._schedule(record, due, JobStatus.SCHEDULED)
        self._windows.start(job.dedup.key, kept_id, due, now)
        return kept_job(copy_job(record.job))

    # -- flow control: paused queues ---------------------------------------------------------
    async def pause_queue(self, queue: str) -> bool:
        check_queue(queue)
        with self._lock:
            if queue in self._paused:
                return False
            self._paused.add(queue)
            return True

    async def resume_queue(self, queue: str) -> bool:
        check_queue(queue)
        with self._lock:
            if queue not in self._paused:
                return False
            self._paused.discard(queue)
            waiters = self._take_waiters()
        wake_all(waiters)
        return True

    async def paused_queues(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._paused)
