"""The broker URL's ``?replicas=N&replicas_timeout=ms`` (``taskit._urls``): read, checked, and
taken off the URL the Redis client gets; the check of a ``WAIT`` reply (``replicas``)."""

from __future__ import annotations

import re

import pytest
import redis.exceptions

from taskit._urls import REPLICAS_TIMEOUT_MS, parse_broker_url
from taskit.broker.redis.replicas import Replicas
from taskit.config import Settings
from taskit.errors import BrokerOutcomeUnknownError, ConfigurationError


def test_replicas_is_read_with_its_default_timeout_and_taken_off_the_url() -> None:
    parsed = parse_broker_url("redis://h:6380/2?replicas=2")
    assert (parsed.replicas, parsed.replicas_timeout_ms) == (2, REPLICAS_TIMEOUT_MS)
    assert parsed.url == "redis://h:6380/2"
    assert parsed.prefix is None


def test_replicas_with_a_timeout_and_other_options_leaves_the_client_its_own() -> None:
    parsed = parse_broker_url(
        "redis+sentinel://s1:26379,s2:26379/mymaster?prefix=shop&replicas=1"
        "&replicas_timeout=250&sentinel_password=spw"
    )
    assert (parsed.prefix, parsed.replicas, parsed.replicas_timeout_ms) == ("shop", 1, 250)
    assert parsed.url == "redis+sentinel://s1:26379,s2:26379/mymaster?sentinel_password=spw"


@pytest.mark.parametrize(
    "url",
    [
        "rediss://h/0?replicas=1&ssl_cert_reqs=none",
        "unix:///run/r.sock?replicas=3",
        "redis+cluster://a:1,b:2?replicas=1&replicas_timeout=10",
    ],
)
def test_every_redis_scheme_takes_replicas(url: str) -> None:
    parsed = parse_broker_url(url)
    assert parsed.replicas is not None
    assert "replicas" not in parsed.url


def test_without_the_option_nothing_changes() -> None:
    parsed = parse_broker_url("redis://h/0?db=0")
    assert parsed.replicas is None
    assert parsed.url == "redis://h/0?db=0"


WHOLE = "must be a whole number >= 1"
BAD = [
    ("redis://h/0?replicas=0", f"option replicas (replicas to wait for) {WHOLE}, got '0'"),
    ("redis://h/0?replicas=-1", f"option replicas (replicas to wait for) {WHOLE}"),
    ("redis://h/0?replicas=two", "got 'two'"),
    ("redis://h/0?replicas=1.5", "got '1.5'"),
    ("redis://h/0?replicas=", "option 'replicas' has no value"),
    ("redis://h/0?replicas=1&replicas=2", "option 'replicas' is given twice"),
    ("redis://h/0?replicas=1&replicas_timeout=0", f"(milliseconds) {WHOLE}, got '0'"),
    ("redis://h/0?replicas=1&replicas_timeout=1s", "got '1s'"),
    ("redis://h/0?replicas_timeout=100", "replicas_timeout means nothing without replicas="),
    ("redis://h/0?replica=1", "unknown option 'replica'"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "part"), BAD)
def test_a_bad_replicas_option_is_refused_naming_it(url: str, part: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(part)):
        Settings(broker_url=url)
    from taskit.broker.redis import RedisBroker

    with pytest.raises(ConfigurationError, match=re.escape(part)):
        RedisBroker(url)


def test_replicas_with_a_replaced_transport_is_refused() -> None:
    from taskit.broker.redis import RedisBroker
    from taskit.broker.redis.transport.redispy import to_url

    with pytest.raises(ConfigurationError, match="needs taskit's own transport"):
        RedisBroker("redis://h/0?replicas=1", connect=to_url("redis://h/0"))


@pytest.mark.parametrize("acked", [2, 3])
def test_enough_replicas_pass(acked: int) -> None:
    Replicas(2, 100).check(acked, "redis://h/0")


def test_too_few_replicas_name_the_numbers() -> None:
    with pytest.raises(BrokerOutcomeUnknownError) as caught:
        Replicas(2, 150).check(1, "redis://h/0")
    text = str(caught.value)
    assert "only 1 of the 2 replicas asked for (?replicas=2) acknowledged it within 150 ms" in text
    assert "ran the write on its master" in text
    assert "may be lost in a failover" in text
    assert "same job ids" in text


def test_a_failed_wait_is_an_unknown_outcome() -> None:
    error = redis.exceptions.ResponseError("UNBLOCKED force unblock from blocking operation")
    with pytest.raises(BrokerOutcomeUnknownError, match="its WAIT for 1 replicas failed"):
        Replicas(1, 100).check(error, "redis://h/0")


def test_the_wait_command_and_its_length() -> None:
    replicas = Replicas(2, 250)
    assert replicas.command == ("WAIT", 2, 250)
    assert replicas.seconds == 0.25
