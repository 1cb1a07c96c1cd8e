"""``taskit pause`` / ``taskit resume`` against a real Redis, and what ``taskit info`` shows of
paused queues. Each test works under a key prefix of its own and deletes its keys afterwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import anyio
import pytest
import redis
from click.testing import CliRunner, Result

from taskit.broker.redis import RedisBroker
from taskit.cli import main
from tests.apps import ops_app

APP = "tests.apps.ops_app:app"
pytestmark = pytest.mark.redis


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    saved = ops_app.app.broker
    ops_app.app.broker = made = RedisBroker(redis_url, prefix=f"flow-{uuid.uuid4().hex[:10]}")
    try:
        yield made
    finally:
        ops_app.app.broker = saved
        client = redis.Redis.from_url(redis_url)
        doomed = list(client.scan_iter(match=made.keys.pattern(), count=500))
        if doomed:
            client.delete(*doomed)
        client.close()


def taskit(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ok(*args: str) -> str:
    result = taskit(*args)
    assert result.exit_code == 0, result.output
    return result.output


def paused(broker: RedisBroker) -> frozenset[str]:
    async def read() -> frozenset[str]:
        try:
            return await broker.paused_queues()
        finally:
            await broker.close()

    return anyio.run(read)


def test_pause_and_resume_queues_and_info_shows_them(broker: RedisBroker) -> None:
    ok("enqueue", APP, "ops.add", "--args", "[1, 1]")

    assert ok("pause", APP, "default", "reports").splitlines() == ["paused default",
                                                                   "paused reports"]  # fmt: skip
    assert ok("pause", APP, "default") == "default was paused already\n"
    assert paused(broker) == {"default", "reports"}
    assert "paused: default, reports" in ok("info", APP)
    assert json.loads(ok("info", APP, "--json"))["paused"] == ["default", "reports"]

    assert ok("resume", APP, "default") == "resumed default\n"
    assert ok("resume", APP, "default") == "default was not paused\n"
    assert paused(broker) == {"reports"}
    assert "paused: reports" in ok("info", APP)


def test_info_says_nothing_of_pausing_when_no_queue_is_paused(broker: RedisBroker) -> None:
    ok("enqueue", APP, "ops.add", "--args", "[1, 1]")
    assert "paused" not in ok("info", APP)
    assert json.loads(ok("info", APP, "--json"))["paused"] == []


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_a_queue_name_is_required_and_not_blank(broker: RedisBroker, command: str) -> None:
    missing = taskit(command, APP)
    assert missing.exit_code == 2
    assert "Missing argument 'QUEUE...'" in missing.output
    blank = taskit(command, APP, " ")
    assert blank.exit_code == 2
    assert "a queue name must be non-empty" in blank.output


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_the_in_process_broker_is_refused(command: str) -> None:
    result = CliRunner().invoke(main, [command, "tests.apps.memory_app:app", "default"])
    assert result.exit_code == 2, result.output
    assert "in-process memory:// broker" in result.output
