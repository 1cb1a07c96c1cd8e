"""A worker's ledger of job ends: the outcomes on their way to the broker, and what the worker
does once each has landed.

Each outcome handed to the settler is entered first (``expect``: its job, how long it ran, its
run hooks' attempt), so that once the broker answered (``settled``, the settler's callback) the
worker writes its one INFO line (a settle batch's lines in one write), sends its ``settled``
event, counts it in ``WorkerStats`` and tells its run hooks; or, where the broker did not apply
it, says so in a WARNING naming the job and why. A job a chain settled in its thread
(``taskit._chain``) is noted the same way from there (``chained``: never with events or hooks,
which keep a worker's jobs off chains). A job whose lease was lost has no outcome to settle
(``lost``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from taskit._logline import LineBatch
from taskit._settler import Settled

if TYPE_CHECKING:
    from taskit._worker_parts import WorkerStats
    from taskit.events import WorkerEvents
    from taskit.hooks import Attempt
    from taskit.job import Job, Outcome

__all__ = ["Ledger", "extra"]


class Ledger:
    """The job ends of one worker run, counted in ``stats`` and logged to ``log``. ``events``:
    where the ``settled`` events go (set once the worker serves; None: no subscriber)."""

    def __init__(self, stats: WorkerStats, log: logging.Logger) -> None:
        self.stats = stats
        self.events: WorkerEvents | None = None
        self._log = log
        # By lease token: the job, how long it ran and its run hooks' attempt, until settled.
        self._settling: dict[str, tuple[Job, float, Attempt | None]] = {}
        self.lines = LineBatch(log)  # the event loop's: a settle batch's lines, then written
        self._chain_lines = LineBatch(log)  # a chain's, in its thread

    def __len__(self) -> int:
        """Outcomes handed to the settler whose answer has not come yet."""
        return len(self._settling)

    def expect(
        self, token: str, job: Job, took: float = 0.0, attempt: Attempt | None = None
    ) -> None:
        """An outcome of ``job`` under lease ``token`` is about to go to the settler."""
        self._settling[token] = (job, took, attempt)

    def settled(self, outcome: Outcome, settled: Settled) -> None:
        """The settler's answer for an outcome entered with ``expect`` (on the event loop)."""
        job, took, attempt = self._settling.pop(outcome.token)
        self._note(job, outcome, settled, took, attempt, self.lines)

    def chained(self, job: Job, outcome: Outcome, settled: Settled, took: float) -> None:
        """A job a chain settled in its thread: its line written at once."""
        self._note(job, outcome, settled, took, None, self._chain_lines)
        self._chain_lines.write()

    def lost(self, job: Job, message: str, attempt: Attempt | None = None) -> None:
        """``job`` lost its lease: nothing to settle (``message``, with ``%s`` for its id)."""
        self._log.warning(message, job.id, extra=extra(job))
        self.stats.count(Settled.STALE)
        if attempt is not None:
            attempt.settled(None, False)

    def _note(
        self, job: Job, outcome: Outcome, settled: Settled, took: float,
        attempt: Attempt | None, lines: LineBatch,
    ) -> None:  # fmt: skip
        """A settled job's log line (into ``lines``, the calling thread's), event, count and
        run hooks."""
        if settled is Settled.APPLIED:
            if self._log.isEnabledFor(logging.INFO):  # the extras are built only for a line
                more = extra(job)
                more["duration"] = round(took, 6)
                lines.add(logging.INFO, "job %s (%s) %s in %.3f s",
                          (job.id, job.task, outcome.kind.value, took), more)  # fmt: skip
            if self.events:
                self.events.settled(job, outcome, took)
        else:
            more = extra(job)
            more["settled"] = settled.value
            lines.write()  # the batch's lines so far first, in order
            self._log.warning("job %s: %s %s", outcome.job_id, outcome.kind.value,
                              settled.meaning, extra=more)  # fmt: skip
        self.stats.count(outcome.kind if settled is Settled.APPLIED else settled)
        if attempt is not None:
            lines.write()  # before anything its hooks log
            attempt.settled(outcome, settled is Settled.APPLIED)


def extra(job: Job) -> dict[str, object]:
    """A job's log extras: ``job_id``, ``task``, ``queue``, ``attempt``."""
    return {"job_id": job.id, "task": job.task, "queue": job.queue, "attempt": job.attempts}
