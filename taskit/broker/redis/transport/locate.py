"""Which Redis server holds the broker's keys now: the ``Locator`` of each kind of URL.

* ``Single`` (``redis://``, ``rediss://``, ``unix://``): that server. If it answers MOVED or
  ASK it is a cluster node, and from then on the locator is a ``Cluster`` seeded with it (the
  docs recommend a cluster URL, which lists several seeds).
* ``Cluster`` (``redis+cluster://``, ``rediss+cluster://``): the master serving the slot of
  the broker's hash tag. It asks the seeds (and every node it has heard of) ``CLUSTER SLOTS``;
  a MOVED reply names the new owner itself, so it needs no lookup. One App is one slot today
  (``keys``); a locator per slot is what several would need.
* ``Sentinel`` (``redis+sentinel://``, ``rediss+sentinel://``): the master the sentinels name
  (``SENTINEL get-master-addr-by-name``), checked with ``ROLE`` (a sentinel may lag behind a
  failover), so a demoted master is never taken for the master.

Every lookup is made on a short-lived connection of its own; ``arefresh`` serves event loops,
``refresh`` threads without one. The transports call them on a refusal (``errors.Refusal``):
the locator's answer is then cached, and read by every connection on its next command.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis.exceptions as rexc
from redis.crc import key_slot

from taskit._urls import CLUSTER_SCHEMES, SENTINEL_SCHEMES, hosts_of, sentinel_master
from taskit.broker.redis.errors import Refusal
from taskit.broker.redis.transport import Locator
from taskit.broker.redis.transport.fast import FastClient
from taskit.broker.redis.transport.switches import SwitchListener
from taskit.broker.redis.transport.sync import BlockingClient
from taskit.broker.redis.transport.target import Target

__all__ = ["Cluster", "Sentinel", "Single", "locator_of"]

log = logging.getLogger(__name__)

#: Seconds one lookup (a connect and one reply) may take: a node that does not answer in this
#: long is passed over for the next, within the caller's own bound.
_LOOKUP_LIMIT = 1.0
#: The refusals that show a plain URL's server is a cluster node.
_CLUSTER_REPLIES = ("MOVED", "ASK")


def locator_of(url: str) -> Locator:
    """The locator of a checked broker URL (``taskit._urls``). ``ValueError``, ``OSError`` or
    ``ssl.SSLError`` for TLS options that cannot be used (a missing certificate file)."""
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        return Cluster(_each_host(url, scheme.replace("+cluster", ""), ""))
    if scheme in SENTINEL_SCHEMES:
        return Sentinel(url)
    return Single(Target.of(url))


class Single:
    """One server, until it shows itself a cluster node (MOVED or ASK): then a ``Cluster``
    seeded with it."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._cluster: Cluster | None = None
        self._key = ""

    def current(self) -> Target | None:
        return self._target if self._cluster is None else self._cluster.current()

    def follows(self, refusal: Refusal) -> bool:
        if self._cluster is not None:
            return True
        return refusal.kind in _CLUSTER_REPLIES and self._target.unix is None

    def node(self, host: str, port: int) -> Target:
        return self._target.at(host, port)

    def aim(self, key: str) -> None:
        self._key = key
        if self._cluster is not None:
            self._cluster.aim(key)

    async def arefresh(self, refusal: Refusal, tried: Target | None) -> Target:
        return await self._as_cluster(refusal).arefresh(refusal, tried)

    def refresh(self, refusal: Refusal, tried: Target | None) -> Target:
        return self._as_cluster(refusal).refresh(refusal, tried)

    def close(self) -> None:
        pass

    def _as_cluster(self, refusal: Refusal) -> Cluster:
        if self._cluster is None:
            log.info(
                "Redis at %s is a cluster node (it answered %s): following the cluster; list "
                "several nodes in a redis+cluster:// URL so that losing this one is survived",
                self._target.where(), refusal.kind,
            )  # fmt: skip
            cluster = Cluster([self._target])
            cluster.aim(self._key)
            self._cluster = cluster
        return self._cluster


class Cluster:
    """The master serving the broker's slot in a Redis Cluster (module docstring)."""

    def __init__(self, seeds: Sequence[Target]) -> None:
        if not seeds:
            raise ValueError("a cluster URL names at least one node")
        self._seeds = list(seeds)
        self._known: list[Target] = list(seeds)  # the seeds, then nodes the cluster named
        self._slot = key_slot(b"{taskit}")
        self._current: Target | None = None

    def current(self) -> Target | None:
        return self._current

    def follows(self, refusal: Refusal) -> bool:
        return True

    def node(self, host: str, port: int) -> Target:
        for known in self._known:
            if known.host == host and known.port == port:
                return known
        return self._seeds[0].at(host, port)

    def aim(self, key: str) -> None:
        slot = key_slot(key.encode())
        if slot != self._slot:
            self._slot, self._current = slot, None

    async def arefresh(self, refusal: Refusal, tried: Target | None) -> Target:
        moved = self._moved_on(refusal, tried)
        if moved is not None:
            return moved
        failures: list[str] = []
        for node in self._asked_first(tried):
            client = FastClient(node, "taskit-locate", _LOOKUP_LIMIT)
            try:
                reply = await client.execute("CLUSTER", "SLOTS")
            except rexc.RedisError as exc:
                failures.append(f"{node.where()}: {exc}")
                continue
            finally:
                await client.aclose()
            if (owner := self._learn(reply, node)) is not None:
                return owner
        raise self._nobody(failures)

    def refresh(self, refusal: Refusal, tried: Target | None) -> Target:
        moved = self._moved_on(refusal, tried)
        if moved is not None:
            return moved
        failures: list[str] = []
        for node in self._asked_first(tried):
            client = BlockingClient(node, "taskit-locate", _LOOKUP_LIMIT)
            try:
                reply = client.execute("CLUSTER", "SLOTS")
            except rexc.RedisError as exc:
                failures.append(f"{node.where()}: {exc}")
                continue
            finally:
                client.close()
            if (owner := self._learn(reply, node)) is not None:
                return owner
        raise self._nobody(failures)

    def close(self) -> None:
        pass

    def _moved_on(self, refusal: Refusal, tried: Target | None) -> Target | None:
        """The answer without a lookup: another caller already moved on from ``tried``, or
        MOVED names the owner."""
        current = self._current
        if current is not None and current is not tried:
            return current
        if refusal.kind == "MOVED" and refusal.host and refusal.port:
            self._current = self.node(refusal.host, refusal.port)
            return self._current
        return None

    def _asked_first(self, tried: Target | None) -> list[Target]:
        """Every node heard of, the one that just refused last."""
        return sorted(self._known, key=lambda node: node is tried)

    def _learn(self, reply: Any, asked: Target) -> Target | None:
        """Read a ``CLUSTER SLOTS`` reply: remember its masters; the owner of the slot."""
        owner: Target | None = None
        masters: list[Target] = []
        for entry in reply if isinstance(reply, list) else []:
            first, last, master = entry[0], entry[1], entry[2]
            host = master[0].decode() if isinstance(master[0], bytes) else ""
            node = self.node(host if host not in ("", "?") else asked.host, int(master[1]))
            masters.append(node)
            if first <= self._slot <= last:
                owner = node
        self._known = _unique([*self._seeds, *masters])
        if owner is not None:
            self._current = owner
        return owner

    def _nobody(self, failures: list[str]) -> rexc.ConnectionError:
        why = "; ".join(failures) or "no node names an owner (the slot is not served)"
        return rexc.ConnectionError(f"no node of the cluster serves slot {self._slot}: {why}")


class Sentinel:
    """The master a Sentinel set names for the URL's master name (module docstring)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = {
            unquote(name): unquote(value)
            for name, sep, value in (p.partition("=") for p in parts.query.split("&"))
            if sep
        }
        self._name = sentinel_master(url)
        path = parts.path.split("/")
        db = path[2] if len(path) > 2 and path[2] else query.get("db", "0")
        plain_scheme = parts.scheme.lower().replace("+sentinel", "")
        self._template = _each_host(url, plain_scheme, f"/{db}", hosts=[("localhost", 6379)])[0]
        login = _login(query.get("sentinel_username"), query.get("sentinel_password"))
        self._sentinels = [
            Target.of(f"redis://{login}{_netloc(host, port)}")
            for host, port in hosts_of(parts.netloc)
        ]
        self._current: Target | None = None
        self._lock = threading.Lock()
        self._switches: SwitchListener | None = None  # started at the first master found

    def current(self) -> Target | None:
        return self._current

    def follows(self, refusal: Refusal) -> bool:
        return True

    def node(self, host: str, port: int) -> Target:
        return self._template.at(host, port)

    def close(self) -> None:
        """Stop listening to ``+switch-master`` and forget the master: used again, the
        locator looks it up anew (and listens again)."""
        with self._lock:
            switches, self._switches = self._switches, None
            self._current = None
        if switches is not None:
            switches.close()

    def aim(self, key: str) -> None:
        pass

    async def arefresh(self, refusal: Refusal, tried: Target | None) -> Target:
        if self._current is not None and self._current is not tried:
            return self._current
        failures: list[str] = []
        for sentinel in self._sentinels:
            try:
                named = await _aask(sentinel, "SENTINEL", "get-master-addr-by-name", self._name)
                master = self._master(named, sentinel)
                if master is not None and _is_master(await _aask(master, "ROLE")):
                    return self._found(master)
                failures.append(f"{sentinel.where()} names {_named(named)}, not a master")
            except rexc.RedisError as exc:
                failures.append(f"{sentinel.where()}: {exc}")
        raise self._nobody(failures)

    def refresh(self, refusal: Refusal, tried: Target | None) -> Target:
        if self._current is not None and self._current is not tried:
            return self._current
        failures: list[str] = []
        for sentinel in self._sentinels:
            try:
                named = _ask(sentinel, "SENTINEL", "get-master-addr-by-name", self._name)
                master = self._master(named, sentinel)
                if master is not None and _is_master(_ask(master, "ROLE")):
                    return self._found(master)
                failures.append(f"{sentinel.where()} names {_named(named)}, not a master")
            except rexc.RedisError as exc:
                failures.append(f"{sentinel.where()}: {exc}")
        raise self._nobody(failures)

    def _master(self, named: Any, sentinel: Target) -> Target | None:
        if not isinstance(named, list) or len(named) != 2:
            return None  # the sentinel does not watch a master of that name
        host = named[0].decode()
        node = self.node(host, int(named[1]))
        current = self._current
        if current is not None and (current.host, current.port) == (node.host, node.port):
            return current  # the same object: connections to it stay open
        return node

    def _found(self, master: Target) -> Target:
        if self._current is not master:
            log.info("Sentinel names %s the master of %r", master.where(), self._name)
        self._current = master
        if self._switches is None:
            with self._lock:
                if self._switches is None:
                    self._switches = SwitchListener(self._sentinels, self._name, self._switched)
                    self._switches.start()
        return master

    def _switched(self, host: str, port: int) -> None:
        """A sentinel names ``host:port`` the master (on the listener's thread): taken once it
        answers ``ROLE`` master; the transports move at their next command."""
        master = self._master([host.encode(), port], self._sentinels[0])
        if master is None or master is self._current:
            return
        try:
            role = _ask(master, "ROLE")
        except rexc.RedisError as exc:
            log.debug("the announced master %s does not answer: %s", master.where(), exc)
            return
        if not _is_master(role):
            return  # a lookup on the next refusal will say
        with self._lock:
            if self._switches is not None:  # not closed meanwhile
                log.info("Sentinel switched the master of %r to %s", self._name, master.where())
                self._current = master

    def _nobody(self, failures: list[str]) -> rexc.ConnectionError:
        return rexc.ConnectionError(
            f"no sentinel names a reachable master for {self._name!r}: {'; '.join(failures)}"
        )


async def _aask(target: Target, *command: Any) -> Any:
    client = FastClient(target, "taskit-locate", _LOOKUP_LIMIT)
    try:
        return await client.execute(*command)
    finally:
        await client.aclose()


def _ask(target: Target, *command: Any) -> Any:
    client = BlockingClient(target, "taskit-locate", _LOOKUP_LIMIT)
    try:
        return client.execute(*command)
    finally:
        client.close()


def _is_master(role: Any) -> bool:
    return isinstance(role, list) and bool(role) and role[0] == b"master"


def _named(reply: Any) -> str:
    if isinstance(reply, list) and len(reply) == 2:
        return f"{reply[0].decode(errors='replace')}:{int(reply[1])}"
    return "no master"


def _each_host(
    url: str, scheme: str, path: str, hosts: Iterable[tuple[str, int]] | None = None
) -> list[Target]:
    """A ``Target`` per host of a many-host URL, as a one-host ``scheme`` URL with its login
    and options (``path``: the database part)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    login = f"{userinfo}@" if userinfo else ""
    query = f"?{parts.query}" if parts.query else ""
    return [
        Target.of(f"{scheme}://{login}{_netloc(host, port)}{path}{query}")
        for host, port in (hosts if hosts is not None else hosts_of(parts.netloc))
    ]


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _login(username: str | None, password: str | None) -> str:
    if password is None:
        return ""
    return f"{quote(username or '', safe='')}:{quote(password, safe='')}@"


def _unique(nodes: Iterable[Target]) -> list[Target]:
    seen: dict[tuple[str, int], Target] = {}
    for node in nodes:
        seen.setdefault((node.host, node.port), node)
    return list(seen.values())
