"""Where the Redis broker connects (``transport.locate``): the locator each URL kind gets, what
a cluster or Sentinel URL means for each server, and which replies are followed
(``errors.refusal_of``). The following itself runs on real servers: test_redis_cluster.py,
test_redis_sentinel.py."""

from __future__ import annotations

import pytest
import redis.exceptions as rexc

from taskit.broker.redis.errors import ReplyLost, refusal_of
from taskit.broker.redis.transport.locate import Cluster, Sentinel, Single, locator_of
from taskit.broker.redis.transport.switches import SwitchListener


def test_each_url_kind_gets_its_locator() -> None:
    assert isinstance(locator_of("redis://h:1/0"), Single)
    assert isinstance(locator_of("unix:///run/r.sock"), Single)
    assert isinstance(locator_of("redis+cluster://a:1,b:2"), Cluster)
    assert isinstance(locator_of("redis+sentinel://s:26379/m"), Sentinel)


def test_a_cluster_url_seeds_every_node_with_its_login_and_tls() -> None:
    cluster = locator_of("rediss+cluster://u:p%40w@a:7000,[::1]:7001?ssl_cert_reqs=none")
    assert isinstance(cluster, Cluster)
    assert cluster.current() is None  # looked up on first use
    first, second = cluster.node("a", 7000), cluster.node("::1", 7001)
    assert (first.host, first.port, second.host, second.port) == ("a", 7000, "::1", 7001)
    assert (first.username, first.password, first.db) == ("u", "p@w", 0)
    assert first.tls is not None
    assert second.tls is not None
    other = cluster.node("c", 7002)  # a node the cluster names later: the same login
    assert (other.password, other.tls is not None) == ("p@w", True)


def test_a_sentinel_url_logs_in_to_the_data_nodes_and_the_sentinels_apart() -> None:
    sentinel = locator_of(
        "redis+sentinel://u:pw@s1:26379,s2/my%20master/3?sentinel_username=su&sentinel_password=sp"
    )
    assert isinstance(sentinel, Sentinel)
    data = sentinel.node("10.0.0.5", 6380)
    assert (data.host, data.port, data.username, data.password, data.db) == (
        "10.0.0.5", 6380, "u", "pw", 3,
    )  # fmt: skip
    watchers = sentinel._sentinels
    assert [(t.host, t.port, t.username, t.password, t.db) for t in watchers] == [
        ("s1", 26379, "su", "sp", 0),
        ("s2", 6379, "su", "sp", 0),
    ]
    assert sentinel._name == "my master"


@pytest.mark.parametrize(
    ("error", "kind", "where"),
    [
        (rexc.ResponseError("MOVED 3362 10.0.0.2:7001"), "MOVED", ("10.0.0.2", 7001)),
        (rexc.ResponseError("ASK 3362 10.0.0.3:7002"), "ASK", ("10.0.0.3", 7002)),
        (rexc.MovedError("3362 10.0.0.2:7001"), "MOVED", ("10.0.0.2", 7001)),  # redis-py's
        (rexc.ResponseError("TRYAGAIN Multiple keys request during rehashing"), "TRYAGAIN", None),
        (rexc.ResponseError("CLUSTERDOWN The cluster is down"), "CLUSTERDOWN", None),
        (rexc.ResponseError("READONLY You can't write against a replica."), "READONLY", None),
        (rexc.ResponseError("ERR Error running script: -READONLY You can't"), "READONLY", None),
        (rexc.ResponseError("LOADING Redis is loading the dataset in memory"), "LOADING", None),
        (rexc.ResponseError("NOREPLICAS Not enough good replicas to write."), "NOREPLICAS", None),
        (rexc.ResponseError("UNBLOCKED force unblock from blocking operation"), "UNBLOCKED", None),
        (rexc.ConnectionError("cannot connect to Redis at h:1: refused"), "refused", None),
    ],
)
def test_replies_that_mean_nothing_ran_are_refusals(
    error: Exception, kind: str, where: tuple[str, int] | None
) -> None:
    refusal = refusal_of(error)
    assert refusal is not None
    assert refusal.kind == kind
    assert (None if refusal.host is None else (refusal.host, refusal.port)) == where


@pytest.mark.parametrize(
    "error",
    [
        ReplyLost("connection to Redis lost before the reply"),  # it may have run
        rexc.ResponseError("ERR unknown command"),
        rexc.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        rexc.AuthenticationError("WRONGPASS invalid username-password pair"),
        rexc.ConnectionError("Error while reading from socket"),  # redis-py: after sending
    ],
)
def test_other_failures_are_not_followed(error: Exception) -> None:
    assert refusal_of(error) is None


def test_a_single_server_follows_only_a_cluster_redirect() -> None:
    single = locator_of("redis://h:1/0")
    moved = refusal_of(rexc.ResponseError("MOVED 1 h2:2"))
    readonly = refusal_of(rexc.ResponseError("READONLY no"))
    assert moved is not None
    assert readonly is not None
    assert single.follows(moved)
    assert not single.follows(readonly)  # one server: a refusal is raised as before
    assert not locator_of("unix:///run/r.sock").follows(moved)


def test_a_switch_message_is_followed_only_for_the_watched_master() -> None:
    seen: list[tuple[str, int]] = []
    listener = SwitchListener([], "my master", lambda host, port: seen.append((host, port)))
    listener._read([b"message", b"+switch-master", b"other 10.0.0.1 6379 10.0.0.2 6380"])
    listener._read([b"pong", b""])  # the answer to the listener's PING
    listener._read([b"message", b"+switch-master", b"my 10.0.0.1 6379 10.0.0.2 6380"])
    assert seen == []
    # A master name with a space cannot be told from the addresses: Sentinel's own format.
    listener = SwitchListener([], "m", lambda host, port: seen.append((host, port)))
    listener._read([b"message", b"+switch-master", b"m 10.0.0.1 6379 10.0.0.2 6380"])
    assert seen == [("10.0.0.2", 6380)]
    assert not listener.alive()  # never started: close is a no-op
    listener.close()
