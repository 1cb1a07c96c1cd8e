"""Watching the Redis server under a broker: data lost to an empty restart, and eviction.

A Redis without persistence (or a flush, or a failover to an empty replica) comes back empty:
every job it held is gone, and nothing in the protocol says so. Each broker therefore keeps an
**epoch**: a random value in ``{prefix}:epoch``, written by the first broker that finds it missing
(``SET NX``) and never expiring. A broker re-reads it at most every ``CHECK_INTERVAL`` seconds,
piggybacked on its own calls; if the value it knew is gone or different, the data it knew is gone,
and it says so loudly (ERROR log, ``restarts_detected``). It never raises for this: workers go on
with the new, empty server.

On its first check a broker also reads ``maxmemory-policy``: any policy but ``noeviction`` lets
Redis delete job records under memory pressure, silently losing jobs, so it logs a warning.
Servers that refuse ``CONFIG GET`` (managed services, ACL users) are not warned about. It also
looks for jobs stored in an older key layout (``legacy`` keys, e.g. ``{taskit}:state`` of
taskit before layout 3): this version cannot see them, so it says so at ERROR, naming the key.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from redis.asyncio import Redis

from taskit.errors import BrokerAuthenticationError, BrokerConnectionError, BrokerError

__all__ = ["CHECK_INTERVAL", "ServerWatch"]

log = logging.getLogger(__name__)

#: Seconds between epoch checks of one broker: an empty restart is reported within this long of
#: the broker's first call after it.
CHECK_INTERVAL = 2.0


class ServerWatch:
    """The epoch and eviction checks of one broker. ``guard`` maps redis-py errors."""

    def __init__(
        self, epoch_key: str, where: str, guard: Any, legacy: tuple[str, ...] = ()
    ) -> None:
        self._key = epoch_key
        self._legacy = legacy
        self._where = where
        self._guard = guard
        self._epoch: bytes | None = None
        self._due = 0.0
        self._policy_checked = False
        #: How many times this broker found its server's data gone.
        self.restarts_detected = 0

    def due(self) -> bool:
        return time.monotonic() >= self._due

    async def check(self, client: Redis) -> None:
        """Read (or create) the epoch; log if it changed. Raises what ``guard`` raises when the
        server cannot be reached (the caller's own command would fail the same way)."""
        self._due = time.monotonic() + CHECK_INTERVAL  # before awaiting: one check at a time
        if not self._policy_checked:
            await self._check_policy(client)
            await self._check_legacy(client)
        fresh = secrets.token_hex(8).encode()
        if await self._guard(client.set(self._key, fresh, nx=True)):
            current: bytes | None = fresh
        else:
            current = await self._guard(client.get(self._key))
        if self._epoch is not None and current != self._epoch:
            self.restarts_detected += 1
            log.error(
                "Redis at %s lost its data: epoch %s is gone (now %s). It restarted empty (no "
                "persistence), was flushed, or failed over to an empty replica: jobs stored "
                "before are lost, and running jobs can no longer be settled. Run Redis with "
                "appendonly yes for jobs.",
                self._where, self._epoch.decode(errors="replace"),
                (current or b"-").decode(errors="replace"),
            )  # fmt: skip
        self._epoch = current

    async def _check_legacy(self, client: Redis) -> None:
        for key in self._legacy:
            if await self._guard(client.exists(key)):
                log.error(
                    "Redis at %s holds jobs in an older taskit key layout (%s exists): this "
                    "version does not see them. Let workers of the older version drain them, "
                    "then upgrade; see docs/redis.md.",
                    self._where, key,
                )  # fmt: skip

    async def _check_policy(self, client: Redis) -> None:
        try:
            reply = await self._guard(client.config_get("maxmemory-policy"))
        except BrokerConnectionError as exc:
            if not isinstance(exc, BrokerAuthenticationError):
                raise  # unreachable now: check again next time
            log.debug("cannot read maxmemory-policy of Redis at %s: %s", self._where, exc)
            self._policy_checked = True
            return
        except BrokerError as exc:  # CONFIG refused: nothing to say about eviction
            log.debug("cannot read maxmemory-policy of Redis at %s: %s", self._where, exc)
            self._policy_checked = True
            return
        self._policy_checked = True
        policy = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
        if isinstance(policy, bytes):
            policy = policy.decode()
        if policy and policy != "noeviction":
            log.warning(
                "Redis at %s has maxmemory-policy %s: under memory pressure it deletes keys, "
                "and job records with them (lost jobs). Set maxmemory-policy noeviction.",
                self._where, policy,
            )  # fmt: skip
