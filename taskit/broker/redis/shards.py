"""Sharded queues on Redis: which key prefixes the shards use, and the broker made of them.

A sharded broker (``taskit.broker.sharded.ShardedBroker``) is N complete ``RedisBroker``s, one
per key prefix (see ``keys``, Sharding). Each prefix is its own hash tag, so its own Cluster
slot; ``shard_prefixes`` picks the tags so that the N slots lie in the N equal slot ranges that
``redis-cli --cluster create`` gives N masters: with as many shards as masters (or a multiple),
each master serves its share of the shards. Shard 0, the home shard, is the prefix itself: its
keys are exactly those of an unsharded broker.

``sharded_redis`` builds such a broker; ``taskit.broker.from_url`` does for a Redis URL with
``?shards=N`` (N > 1).
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Sequence

from redis.crc import key_slot

from taskit._urls import (
    MAX_SHARDS,
    REDIS_SCHEMES,
    BrokerURL,
    check_prefix,
    parse_broker_url,
)
from taskit.broker.base import Broker, BrokerOptions
from taskit.broker.redis.broker import RedisBroker
from taskit.broker.sharded import ShardedBroker
from taskit.config import Settings, redact_url
from taskit.errors import ConfigurationError

__all__ = ["SLOTS", "covered_counts", "shard_prefixes", "sharded_redis"]

#: The hash slots of a Redis Cluster.
SLOTS = 16384


def shard_prefixes(prefix: str, shards: int) -> list[str]:
    """The key prefixes of the ``shards`` shards of ``prefix``, shard 0 first.

    Shard 0 (home) is ``prefix`` itself, so ``shards=1`` is ``[prefix]``: today's layout. For
    two or more, the Cluster's slots are cut into ``shards`` equal ranges
    ``[k * 16384 // shards, (k + 1) * 16384 // shards)``; the home's slot lies in one, and
    each other range, in order, gets ``f"{prefix}~{j}"`` for the first ``j = 1, 2, ...`` whose
    slot lies in it. Pure and deterministic: the same answer on every host and every version,
    as it must be (the prefixes name where jobs are stored). (``redis-cli --cluster create``
    rounds where this floors: a tag on the one slot at such a border, rare, shares a master.)

    The shards of a count are among those of each multiple of it (a range of N is cut into
    whole ranges of kN, and the first ``j`` in it is the first in its part), not in general
    among those of other larger counts: see ``covered_counts``.

    Raises ``ConfigurationError`` naming the value for a prefix that cannot name Redis keys
    (empty, braces) or a count outside 1..64.
    """
    return list(_prefixes(check_prefix(prefix, "a sharded broker's key prefix"), _count(shards)))


def _count(shards: object) -> int:
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ConfigurationError(
            f"shards (how many hash-tag shards each queue is spread over) must be a whole "
            f"number from 1 to {MAX_SHARDS}, got {shards!r}"
        )
    return shards


@functools.lru_cache(maxsize=256)
def _prefixes(prefix: str, shards: int) -> tuple[str, ...]:
    if shards == 1:
        return (prefix,)
    starts = [k * SLOTS // shards for k in range(shards)]
    home = bisect.bisect_right(starts, _slot(prefix)) - 1
    chosen: dict[int, str] = {home: prefix}
    for j in itertools.count(1):
        tag = f"{prefix}~{j}"
        slot = _slot(tag)
        k = bisect.bisect_right(starts, slot) - 1
        if k not in chosen:
            chosen[k] = tag
            if len(chosen) == shards:
                break
    return tuple(chosen[k] for k in sorted(chosen, key=lambda k: (k != home, k)))


def covered_counts(prefix: str, shards: int) -> tuple[int, ...]:
    """The shard counts (1 to ``shards``, ascending) whose every shard is one of the shards of
    ``shards``: the layouts a broker of ``shards`` shards sees all the jobs of. Always 1,
    ``shards`` and its divisors; others only by chance. Raises as ``shard_prefixes``."""
    return _covered(check_prefix(prefix, "a sharded broker's key prefix"), _count(shards))


@functools.lru_cache(maxsize=256)
def _covered(prefix: str, shards: int) -> tuple[int, ...]:
    mine = set(_prefixes(prefix, shards))
    return tuple(n for n in range(1, shards + 1) if mine.issuperset(_prefixes(prefix, n)))


def _slot(tag: str) -> int:
    """The Cluster slot of every key of hash tag ``{tag}``."""
    return int(key_slot(tag.encode()))


def sharded_redis(
    url: str,
    *,
    shards: int,
    prefix: str | None = None,
    result_ttl: float | None = None,
    timeout: float | None = None,
) -> ShardedBroker:
    """A ``ShardedBroker`` of ``shards`` ``RedisBroker``s on the Redis (or Cluster, or Sentinel
    set) at ``url``, one per prefix of ``shard_prefixes``.

    ``url``, ``prefix``, ``result_ttl`` and ``timeout`` are read as ``RedisBroker`` reads them
    (options left None come from the URL's ``?prefix=``, else from the settings of the App the
    broker is given to); the shards are made again for the App's settings if they change the
    prefix, TTL or timeout. A ``?shards=`` in ``url`` must agree with ``shards``.

    Raises ``ConfigurationError`` for an unusable URL, prefix, TTL or timeout, for ``shards``
    outside 2..64 (one shard is a ``RedisBroker``: use it), and, at the first call, when the
    prefix's jobs are spread over more shards than ``shards`` (see ``watch``, Shards).
    """
    if not isinstance(url, str) or url.partition(":")[0].lower() not in REDIS_SCHEMES:
        raise ConfigurationError(
            f"not a Redis URL: {redact_url(str(url))} (use redis://, rediss://, unix://, "
            "redis+cluster:// or redis+sentinel://)"
        )
    parsed = parse_broker_url(url)
    count = _count(shards)
    if count == 1:
        raise ConfigurationError(
            "shards=1 is no sharded broker: use RedisBroker(url) (or taskit.broker.from_url)"
        )
    if parsed.shards not in (1, count):
        raise ConfigurationError(
            f"two shard counts: shards={count} and ?shards={parsed.shards} in "
            f"{redact_url(url)}; give one"
        )
    if prefix is not None and parsed.prefix is not None and prefix != parsed.prefix:
        raise ConfigurationError(
            f"two key prefixes: prefix={prefix!r} and ?prefix={parsed.prefix!r} in "
            f"{redact_url(url)}; give one"
        )
    options = BrokerOptions(
        ("redis_prefix", "result_ttl", "broker_timeout"),
        redis_prefix=prefix if prefix is not None else parsed.prefix,
        result_ttl=result_ttl,
        broker_timeout=timeout,
    )

    def build(settings: Settings) -> Sequence[Broker]:
        layout = (count, covered_counts(settings.redis_prefix, count))
        home, *others = shard_prefixes(settings.redis_prefix, count)
        url = _shard_url(parsed)
        first = _Shard(url, layout, home, settings)
        return [first, *(_Shard(url, layout, p, settings, first) for p in others)]

    return ShardedBroker(options, build)


def _shard_url(parsed: BrokerURL) -> str:
    """The URL each shard is given: the client's, with the acknowledgement's options (the
    prefix and the shard count are the layout's, given to each shard on their own)."""
    if parsed.replicas is None:
        return parsed.url
    wait = f"replicas={parsed.replicas}&replicas_timeout={parsed.replicas_timeout_ms}"
    return f"{parsed.url}{'&' if '?' in parsed.url else '?'}{wait}"


class _Shard(RedisBroker):
    """One shard of a layout: a ``RedisBroker`` on prefix ``prefix`` that records the layout's
    shard count on first use, and refuses to run on data of a count it does not cover
    (``layout``: the count and its ``covered_counts``), the ``home`` shard's check first (see
    ``watch``, Shards)."""

    def __init__(
        self,
        url: str,
        layout: tuple[int, tuple[int, ...]],
        prefix: str,
        settings: Settings,
        home: RedisBroker | None = None,
    ) -> None:
        # Before __init__, which builds the watch that checks them.
        self._layout, self._home = layout, home
        super().__init__(
            url, prefix=prefix, result_ttl=settings.result_ttl, timeout=settings.broker_timeout
        )
