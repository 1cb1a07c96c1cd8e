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

**Shards.** Before its first call runs, a broker also reads the shard count kept in
``{prefix}:shards`` (see ``keys``, Sharding), and, as one shard of a sharded broker, records its
layout's count when larger (``lua/shards-1.lua``). It refuses that call and every later one
with ``ConfigurationError`` naming both counts unless its shards include every shard of the
count kept (``shards.covered_counts``: a smaller count that divides its own, in general):
otherwise the jobs on the shards it lacks would be invisible to it (never run, never found by
id). A plain broker is a layout of one shard, so it refuses on a prefix a sharded broker used.
The home shard's key is the one every layout of a prefix shares, so each other shard has the
home shard's check pass before its own (``first``): whichever shard a sharded broker's first
call reaches, the count is checked and recorded at home. A check that could not reach the
server is made again at the next call.

**Memory.** A Redis over ``maxmemory`` that may not evict refuses every command that would store
more (``BrokerOutOfMemoryError``). The epoch check's ``SET NX`` is such a command, so it doubles as
a probe every ``CHECK_INTERVAL``: a refusal there is reported, never raised (the broker's own call,
which frees or moves data, still runs). Every refusal the broker meets calls ``full()``, which
logs one WARNING per ``FULL_LOG_INTERVAL`` however many calls are refused (a busy worker or
producer would otherwise log one per job); the first probe that passes after a warning logs once
at INFO.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.requests import Shards
from taskit.broker.redis.scripts import SCRIPTS
from taskit.broker.redis.transport import Transport
from taskit.errors import (
    BrokerAuthenticationError,
    BrokerConnectionError,
    BrokerError,
    BrokerOutOfMemoryError,
    ConfigurationError,
)

__all__ = ["CHECK_INTERVAL", "FULL_LOG_INTERVAL", "ServerWatch"]

log = logging.getLogger(__name__)

#: Seconds between epoch checks of one broker: an empty restart is reported within this long of
#: the broker's first call after it.
CHECK_INTERVAL = 2.0
#: Seconds between two warnings that Redis is out of memory, however many writes it refuses.
FULL_LOG_INTERVAL = 30.0


def _refusal(where: str, key: str, kept: int, mine: int) -> str:
    """Why a broker of ``mine`` shards may not run where ``kept`` is kept."""
    if kept > mine:
        lacks = f"has {mine}: the jobs on the {kept - mine} shard(s) it lacks"
    else:
        lacks = (
            f"has {mine}, which do not include them all (a count grows safely to a multiple of "
            "itself; the shards of others are placed anew): the jobs on the shards it lacks"
        )
    return (
        f"Redis at {where}: this prefix's jobs are spread over {kept} shards ({key} = {kept}), "
        f"and this broker {lacks} would be invisible to it (never run, never found by id). Use "
        f"?shards={kept} or a multiple of it in the broker URL (taskit.broker.from_url). To "
        f"change to another count, drain every queue with {kept} shards first, then delete {key}."
    )


class ServerWatch:
    """The epoch, eviction and shard count checks of one broker. ``guard``
    (``Connections.guard_repeatable``) runs a command, made again once on a connection failure
    (each here is safe to repeat), and maps the transport's errors. ``shards``: the broker's keys
    and its shard count check (None: no such check); ``first``, a check to pass before it (a
    shard's: its home shard's)."""

    def __init__(
        self,
        epoch_key: str,
        where: str,
        guard: Any,
        legacy: tuple[str, ...] = (),
        shards: tuple[Keys, Shards] | None = None,
        first: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._key = epoch_key
        self._legacy = legacy
        self._where = where
        self._guard = guard
        self._shards = shards
        self._first = first
        self._shards_known = shards is None  # checked, and this broker may run
        self._refusal: str | None = None  # why it may not (fewer shards than kept)
        self._epoch: bytes | None = None
        self._due = 0.0
        self._policy_checked = False
        self._damage_logged = False
        #: How many times this broker found its server's data gone.
        self.restarts_detected = 0
        # Out of memory: when the last warning was logged, whether no "accepts writes again"
        # followed it yet, and the writes refused since it. Refusals come from any thread that
        # uses the broker (sync enqueues).
        self._full_lock = threading.Lock()
        self._warned_at = float("-inf")
        self._warned = False
        self._refused = 0

    def due(self) -> bool:
        return not self._shards_known or time.monotonic() >= self._due

    async def check(self, client: Transport) -> None:
        """Check the shard count (first), then read (or create) the epoch; log if it changed.
        Raises ``ConfigurationError`` while the shard count forbids this broker to run (see
        Shards), and what ``guard`` raises when the server cannot be reached (the caller's own
        command would fail the same way)."""
        if not self._shards_known:
            await self._check_shards(client)
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + CHECK_INTERVAL  # before awaiting: one check at a time
        if not self._policy_checked:
            await self._check_policy(client)
            await self._check_legacy(client)
        fresh = secrets.token_hex(8).encode()
        try:
            created = await self._guard(lambda: client.execute("SET", self._key, fresh, "NX"))
        except BrokerOutOfMemoryError:
            created = None  # reported by full(): read the epoch instead
        else:
            self._writable()
        if created:
            current: bytes | None = fresh
        else:
            try:
                current = await self._guard(lambda: client.execute("GET", self._key))
            except BrokerError as exc:
                if type(exc) is not BrokerError:  # unreachable: the caller's command fails too
                    raise
                await self._damaged(client, exc)  # damaged data: never fails the call it rides on
                return
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

    async def _check_shards(self, client: Transport) -> None:
        """Read the shard count kept (recording this broker's when larger and allowed); refuse,
        now and from now on, unless this broker covers it."""
        if self._refusal is not None:
            raise ConfigurationError(self._refusal)
        if self._first is not None:
            await self._first()
        if self._shards is None:
            self._shards_known = True
            return
        keys, request = self._shards
        names, args = request.keys(keys), request.args()
        kept = request.answer(
            await self._guard(lambda: SCRIPTS.call(client, request.script, names, args))
        )
        if kept in request.covers:
            self._shards_known = True
            return
        self._refusal = _refusal(self._where, keys.shards, kept, request.mine)
        raise ConfigurationError(self._refusal)

    async def _damaged(self, client: Transport, exc: BrokerError) -> None:
        """The epoch key holds another type than a string (WRONGTYPE): say so once."""
        if self._damage_logged:
            return
        self._damage_logged = True
        kind = await self._guard(lambda: client.execute("TYPE", self._key))
        log.error(
            "Redis at %s: key %r holds a %s where taskit keeps a string (damaged data, not "
            "written by taskit); a restart that lost the data cannot be noticed until it is "
            "deleted: %s",
            self._where, self._key, kind.decode(errors="replace"), exc,
        )  # fmt: skip

    def full(self) -> None:
        """Redis refused a write for being over ``maxmemory``: warn, at most once per
        ``FULL_LOG_INTERVAL``. Safe from any thread."""
        now = time.monotonic()
        with self._full_lock:
            self._refused += 1
            if now - self._warned_at < FULL_LOG_INTERVAL:
                return
            self._warned_at, self._warned, refused, self._refused = now, True, self._refused, 0
        log.warning(
            "Redis at %s is out of memory: used memory is over 'maxmemory' and nothing may be "
            "evicted, so it refuses to store more (writes refused since the last such line: %d). "
            "New jobs are refused (enqueue raises BrokerOutOfMemoryError); jobs already stored "
            "still run, settle, retry and are reclaimed. Free memory or raise maxmemory "
            "(docs/operations.md).",
            self._where, refused,
        )  # fmt: skip

    def _writable(self) -> None:
        """A write went through: if Redis was reported full, say once that it no longer is.
        (Memory that comes and goes still logs at most two lines per ``FULL_LOG_INTERVAL``.)"""
        with self._full_lock:
            was_full, self._warned = self._warned, False
        if was_full:
            log.info("Redis at %s accepts writes again (used memory is below 'maxmemory')",
                     self._where)  # fmt: skip

    async def _check_legacy(self, client: Transport) -> None:
        for key in self._legacy:
            if await self._guard(functools.partial(client.execute, "EXISTS", key)):
                log.error(
                    "Redis at %s holds jobs in an older taskit key layout (%s exists): this "
                    "version does not see them. Let workers of the older version drain them, "
                    "then upgrade; see docs/redis.md.",
                    self._where, key,
                )  # fmt: skip

    async def _check_policy(self, client: Transport) -> None:
        try:
            reply = await self._guard(lambda: client.execute("CONFIG", "GET", "maxmemory-policy"))
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
        # A flat [name, value] list; empty where the server hides the setting.
        policy = reply[1].decode() if isinstance(reply, list) and len(reply) == 2 else None
        if policy and policy != "noeviction":
            log.warning(
                "Redis at %s has maxmemory-policy %s: under memory pressure it deletes keys, "
                "and job records with them (lost jobs). Set maxmemory-policy noeviction.",
                self._where, policy,
            )  # fmt: skip
