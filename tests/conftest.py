"""Shared fixtures.

Every async test runs on asyncio and trio unless it asks for a backend. Tests that need Redis take
the ``redis_url`` fixture: outside CI they skip when no Redis answers; under ``CI=true`` they fail,
so a missing Redis can never turn into a green run. ``redis_cluster`` and ``sentinel_set`` are
the session's Redis Cluster and Sentinel set (tests/topology), from redis-server, held to the same
rule.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests._ci import missing

if TYPE_CHECKING:
    from tests.topology import RedisCluster, SentinelSet

REDIS_URL = os.environ.get("TASKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server; fails (CI) or skips (elsewhere) when none answers."""
    if not _redis_answers():
        missing(f"no Redis answers at {REDIS_URL}; tests that need Redis cannot run")
    return REDIS_URL


def _needs_redis_server(what: str) -> None:
    from tests.topology.process import redis_server_binary

    if redis_server_binary() is None:
        missing(f"redis-server is not installed; tests that need {what} cannot run")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A Redis Cluster (3 masters, a replica each) on loopback ports, started once per session
    (~2 s) and killed at its end; see tests/topology. Tests that move slots or masters leave it
    whole (every move waits until the cluster agrees and the replicas are back in sync)."""
    _needs_redis_server("a Redis Cluster")
    from tests.topology import RedisCluster

    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A master, a replica and 3 sentinels (master name ``taskit``) on loopback ports,
    started once per session and killed at its end; see tests/topology."""
    _needs_redis_server("a Sentinel set")
    from tests.topology import SentinelSet

    with SentinelSet(tmp_path_factory.mktemp("sentinel-set")) as made:
        yield made
