"""Acknowledged writes that wait for replicas: the URL's ``?replicas=N`` (``taskit._urls``).

Why: Redis replicates asynchronously, and Sentinel's failover does not wait for the replica it
promotes to catch up, so a write the old master acknowledged in its last moments can be lost
even with ``min-replicas-to-write`` (docs/deployment.md, chaos row 25). With ``replicas=N``
each script call of ``REPLICATED`` is followed, on the same connection and in the same write,
by ``WAIT N <replicas_timeout>``: Redis answers it once N replicas have every write that
connection made, so a write is acknowledged to the caller only once N replicas hold it.

What holds: an acknowledged write is on N replicas. What fails: when fewer acknowledge within
the timeout (a replica down or behind, a failover under way), or the ``WAIT`` itself fails
(its master demoted under it), the call raises ``BrokerOutcomeUnknownError`` naming the
numbers: the write ran on the master but may be lost in a failover. An enqueue retried with the
same job ids stores nothing twice; a worker's settle is fenced by its lease token.

Not covered, as a lease already makes their loss safe (the job runs again): reserve, extend,
reclaim, progress, wake-ups, once claims, worker presence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.exceptions

from taskit.broker.redis.transport import Arg
from taskit.errors import BrokerOutcomeUnknownError

__all__ = ["REPLICATED", "Replicas"]

#: The scripts whose acknowledged change a failover must not lose: the enqueue above all,
#: settles, and the admin writes (cancel, requeue, purge, promote, forget, pause, limits).
REPLICATED = frozenset(
    {
        "enqueue",
        "enqueue-plain",
        "settle",
        "cancel",
        "requeue-dead",
        "purge",
        "purge-dead",
        "promote",
        "forget",
        "pause",
        "limits-set",
        "once-end",
        "workflow-cancel",
    }
)


@dataclass(frozen=True, slots=True)
class Replicas:
    """Wait for ``count`` replicas, at most ``timeout_ms`` milliseconds, after each write."""

    count: int
    timeout_ms: int

    @property
    def command(self) -> tuple[Arg, ...]:
        """The ``WAIT`` sent right behind each write."""
        return ("WAIT", self.count, self.timeout_ms)

    @property
    def seconds(self) -> float:
        """How long the ``WAIT`` may block on the server, in seconds."""
        return self.timeout_ms / 1000

    def check(self, acked: Any, where: str) -> None:
        """Return if ``acked`` (the ``WAIT``'s raw reply) counts ``count`` replicas or more;
        else raise ``BrokerOutcomeUnknownError`` naming the numbers and the Redis at
        ``where`` (a redacted URL)."""
        if isinstance(acked, int) and acked >= self.count:
            return
        if isinstance(acked, redis.exceptions.ResponseError):
            got = f"its WAIT for {self.count} replicas failed ({acked})"
        else:
            got = (
                f"only {acked} of the {self.count} replicas asked for (?replicas={self.count}) "
                f"acknowledged it within {self.timeout_ms} ms"
            )
        raise BrokerOutcomeUnknownError(
            f"Redis at {where} ran the write on its master, but {got}: it may be lost in a "
            "failover. Retry only what is safe to repeat, e.g. an enqueue with the same job "
            "ids (it stores nothing twice)"
        )
