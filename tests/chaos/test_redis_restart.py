"""Redis killed under load: catalogue rows 8 (AOF always), 9 (AOF everysec) and 10 (no
persistence); and the broker's detection of an empty restart and of an eviction policy."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskit.broker.redis import RedisBroker
from taskit.broker.redis import watch as _watch
from tests.broker._redis_kinds import OwnRedisServer
from tests.chaos.restart import run_restart

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_row8_restart_with_aof_always_loses_nothing(tmp_path: Path) -> None:
    figures = await run_restart(tmp_path, "always", before=1.0, after=1.0)
    print(f"row 8: {figures.line()}")
    assert figures.report.lost == [], figures.line()
    assert figures.report.unjustified == [], figures.line()
    assert figures.acked_before_kill > 20
    assert figures.worker_exits == 0  # workers reconnected (and reloaded the scripts: jobs ran)
    assert figures.stuck_running == 0  # nothing stuck in flight one lease after
    assert figures.half_moved == []
    assert not figures.detected  # the data survived: no false alarm


async def test_row9_restart_with_aof_everysec_loses_only_inside_its_window(
    tmp_path: Path,
) -> None:
    figures = await run_restart(tmp_path, "everysec", before=1.0, after=1.0, window=2.0)
    print(f"row 9: {figures.line()}")
    # everysec fsyncs once a second: what the kill can take is what was acknowledged in the
    # last second or two (the fsync may lag by up to 2 s); nothing older.
    assert len(figures.report.lost) == figures.lost_in_window, figures.line()
    assert figures.report.unjustified == [], figures.line()
    assert figures.worker_exits == 0
    assert figures.stuck_running == 0
    assert figures.half_moved == []


async def test_row10_restart_without_persistence_is_detected_and_survived(
    tmp_path: Path,
) -> None:
    figures = await run_restart(tmp_path, "none", before=1.0, after=1.0)
    print(f"row 10: {figures.line()}")
    assert figures.detected, "no worker said that Redis came back empty"
    assert figures.worker_exits == 0
    assert figures.report.unjustified == [], figures.line()
    # Everything acknowledged after the restart ran: losses are only what Redis held then.
    assert figures.stuck_running == 0
    assert figures.half_moved == []
    assert figures.recovery < 10


@pytest.fixture
def own() -> Iterator[OwnRedisServer]:
    server = OwnRedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def test_broker_detects_an_empty_restart_and_logs_it_without_raising(
    own: OwnRedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_watch, "CHECK_INTERVAL", 0.0)  # check on every call
    broker = RedisBroker(own.url)
    try:
        await broker.stats(["q"])
        await broker.stats(["q"])
        assert broker.restarts_detected == 0  # the epoch it wrote is still there
        own.kill()
        own.start()
        with caplog.at_level(logging.ERROR, logger="taskit.broker.redis.watch"):
            await broker.stats(["q"])
        assert broker.restarts_detected == 1
        assert "lost its data" in caplog.text
        caplog.clear()
        await broker.stats(["q"])
        assert broker.restarts_detected == 1  # said once per loss, not on every call
    finally:
        await broker.close()


async def test_a_flushed_redis_is_noticed_by_a_broker_that_had_seen_it(
    own: OwnRedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_watch, "CHECK_INTERVAL", 0.0)
    first, second = RedisBroker(own.url), RedisBroker(own.url)
    try:
        await first.stats(["q"])
        await second.stats(["q"])
        own.kill()
        own.start()
        await second.stats(["q"])  # re-creates the epoch
        await first.stats(["q"])  # finds a different one
        assert (first.restarts_detected, second.restarts_detected) == (1, 1)
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(("policy", "warned"), [("allkeys-lru", True), ("noeviction", False)])
async def test_eviction_policy_other_than_noeviction_is_warned_about(
    policy: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    server = OwnRedisServer("--maxmemory-policy", policy)
    server.start()
    broker = RedisBroker(server.url)
    try:
        with caplog.at_level(logging.WARNING, logger="taskit.broker.redis.watch"):
            await broker.stats(["q"])
            await broker.stats(["q"])
    finally:
        await broker.close()
        server.stop()
    assert ("maxmemory-policy " + policy in caplog.text) is warned
    said = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert len(said) == (1 if warned else 0)  # once per broker
