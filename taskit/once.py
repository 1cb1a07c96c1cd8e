"""Doing a side effect once per key: the ``Once`` guard that ``App.once`` makes.

A handler that sends an email, charges a card or calls a webhook may run more than once for one
piece of work: a retry after a later step failed, a job enqueued twice, a rerun by hand. The
guard lets the first run that enters it for a key do the work, and every later one skip it::

    async with app.once(f"welcome-mail:{user_id}") as first:
        if first:
            await send_welcome_mail(user_id)

``with`` does the same in a sync handler. What it promises, per key, through the broker's once
keys (``Broker.begin_once`` / ``end_once``):

* entering takes the key for ``hold`` seconds when it is free (``first`` is True); finds it done
  (``first`` is False: skip); or finds another run in it and raises ``OnceBusy``, a ``Retry``,
  so the job comes back later and then skips or does the work;
* leaving after the body succeeded marks the key done for ``ttl`` seconds; leaving by an
  exception (cancellation and timeouts included) releases it at once, so a retry does the work;
* a worker that dies inside the body ends nothing: the key stays held until ``hold`` passes,
  then a retry may do the work again. So the work is done by at most one run at a time, and
  never again once a success is recorded; it is *not* exactly once: a run that dies after the
  side effect and before recording it lets a later run repeat it (after ``hold``). Make the
  body itself idempotent where that matters (an id sent to the payment provider).

The body should end within ``hold``; one that takes longer may overlap a second run (its exit
then logs a warning) and needs a longer ``hold``.
"""

from __future__ import annotations

import logging
import secrets
from types import TracebackType

import anyio

from taskit._portal import SyncBridge
from taskit.broker.base import Broker, OnceState
from taskit.errors import BrokerConnectionError, OnceBusy

__all__ = ["DEFAULT_TTL", "Once"]

log = logging.getLogger(__name__)

#: Seconds a done key is remembered when ``App.once`` is given no ``ttl``: one day.
DEFAULT_TTL = 86_400.0

#: Pauses between tries to end a hold when the broker cannot be reached: recording a success
#: matters (without it, a retry after ``hold`` repeats the work), so a short outage is waited out.
_END_PAUSES = (0.1, 0.5, 2.0)


class Once:
    """A guard for one key: ``async with once as first`` (or ``with`` in sync code). Build it
    with ``App.once``; one entry at a time (enter it again after it exited, never nested).

    ``ttl``: seconds a success is remembered; ``hold``: seconds a run holds the key before a
    worker that died in the body is given up (both > 0, else ``ValueError``). ``bridge`` runs
    the broker calls of a ``with`` (sync code). Entering raises ``OnceBusy`` while another run
    holds the key, and whatever the broker raises (``BrokerConnectionError``...): nothing was
    taken then, so the body must not run.
    """

    def __init__(
        self, broker: Broker, key: str, *, ttl: float, hold: float, bridge: SyncBridge
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"a once key must be a non-empty string, got {key!r}")
        for name, value in (("ttl", ttl), ("hold", hold)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"once {name} must be a number of seconds > 0, got {value!r}")
        self.broker, self.key, self.ttl, self.hold = broker, key, float(ttl), float(hold)
        self._bridge = bridge
        self._token: str | None = None  # this entry's run, while it holds the key

    def __repr__(self) -> str:
        return f"<Once {self.key!r} ttl={self.ttl:g}s hold={self.hold:g}s>"

    async def __aenter__(self) -> bool:
        if self._token is not None:
            raise RuntimeError(f"{self!r} is already entered")
        token = secrets.token_hex(16)
        state = await self.broker.begin_once(self.key, token, hold=self.hold)
        if state is OnceState.HELD:
            raise OnceBusy(self.key)
        if state is OnceState.DONE:
            log.debug("once key %r is done: skipping", self.key)
            return False
        self._token = token
        return True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is None:
            return  # this run skipped: the key is another run's
        with anyio.CancelScope(shield=True):  # a cancelled body still ends its hold
            await self._end(token, None if exc_type is not None else self.ttl)

    def __enter__(self) -> bool:
        return self._bridge.call(self.__aenter__)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bridge.call(self.__aexit__, exc_type, exc, tb)

    async def _end(self, token: str, done_for: float | None) -> None:
        """Mark the work done (``done_for`` seconds) or release the key; retried through a short
        broker outage (``end_once`` is idempotent for a retry). If the broker stays down, a
        release is given up with a warning (the body's error goes on), a done mark raises the
        broker's error; either way the hold expires after ``hold`` seconds."""
        for pause in (*_END_PAUSES, None):
            try:
                held = await self.broker.end_once(self.key, token, done_for=done_for)
                break
            except BrokerConnectionError as exc:
                if pause is None and done_for is None:
                    log.warning(
                        "releasing once key %r failed (%s): it is free again in %gs",
                        self.key, exc, self.hold,
                    )  # fmt: skip
                    return  # the body's own error is what the caller needs to see
                if pause is None:
                    raise
                log.warning("ending once key %r failed (%s): trying again", self.key, exc)
                await anyio.sleep(pause)
        if done_for is not None and not held:
            log.warning(
                "once key %r: the body outlasted its %gs hold, so another run may have done "
                "the work too; give this key a longer hold", self.key, self.hold,
            )  # fmt: skip
