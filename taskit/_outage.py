"""Broker outages as one loop sees them: how long to wait before the next try, and what to log.

Every loop that talks to the broker (the worker's fetcher, lease heartbeat, reaper and settler,
the presence announcer, the scheduler, the metrics refresher) keeps one ``Outage``. After a failed
call it waits ``outage.failed(exc)`` seconds, a capped exponential backoff with jitter, so a
broker that is down is never hammered; after a call that worked it calls ``outage.recovered()``.

The log says it once, not once per try: a WARNING at the first failure, then at most one line
every ``LOG_EVERY`` seconds while the failures go on (with how many tries failed and for how
long), and one INFO line when the loop works again. A dozen loops against a dead Redis therefore
write a few lines a minute, not thousands a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from taskit.backoff import BackoffPolicy, Exponential

__all__ = ["BACKOFF", "LOG_EVERY", "Outage"]

#: Wait after the n-th failure in a row: 0.1 s doubling up to 5 s, each drawn from its upper half.
BACKOFF: BackoffPolicy = Exponential(base=0.1, cap=5.0)
#: While a failure goes on, seconds between two log lines of one loop.
LOG_EVERY = 10.0


class Outage:
    """The failure state of one loop named ``name`` (used in its log lines).

    ``backoff``: attempt -> seconds (default ``BACKOFF``); ``clock``: monotonic seconds (tests).
    Single task only: each loop owns its own.
    """

    def __init__(
        self,
        name: str,
        logger: logging.Logger,
        *,
        backoff: BackoffPolicy = BACKOFF,
        log_every: float = LOG_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._log = logger
        self._backoff = backoff
        self._log_every = log_every
        self._clock = clock
        self._failures = 0
        self._since = 0.0
        self._logged_at = 0.0

    @property
    def failures(self) -> int:
        """Failed tries in a row (0 when the last try worked)."""
        return self._failures

    def failed(self, exc: BaseException, what: str | None = None) -> float:
        """Count a failed try and return the seconds to wait before the next one. ``what``
        says what failed (default ``"<name> failed"``); it opens the log line, if one is due."""
        now = self._clock()
        self._failures += 1
        delay = self._backoff(self._failures)
        what = what or f"{self.name} failed"
        if self._failures == 1:
            self._since = self._logged_at = now
            self._log.warning(
                "%s: %s (retrying with backoff; next try in %.2f s)", what, exc, delay
            )
        elif now - self._logged_at >= self._log_every:
            self._logged_at = now
            self._log.warning(
                "%s: still failing after %d tries over %.1f s: %s (next try in %.2f s)",
                what, self._failures, now - self._since, exc, delay,
            )  # fmt: skip
        return delay

    def recovered(self) -> None:
        """The last try worked: end the outage (logged if there was one)."""
        if self._failures:
            self._log.info(
                "%s works again after %d failed tries over %.1f s",
                self.name, self._failures, self._clock() - self._since,
            )  # fmt: skip
            self._failures = 0
