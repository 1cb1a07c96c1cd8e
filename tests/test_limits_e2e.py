"""Limits end to end, against the real brokers (memory, and Redis on this machine): a worker
writes its App's declared limits before reserving and they hold across its runners; the limit
commands change the live definition every worker sees. Needs the brokers' enforcement (issue 14
core)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import anyio
import msgspec
import pytest
import redis
from click.testing import CliRunner

from taskit import App, LimitSpec, MemoryBroker, Settings
from taskit.broker.base import Broker
from taskit.broker.redis import RedisBroker
from taskit.cli import main
from tests.apps import limits_app

pytestmark = pytest.mark.anyio
#: The Redis transports are asyncio's: every test here runs on asyncio alone.
ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])
APP = "tests.apps.limits_app:app"


def _clean(url: str, made: RedisBroker) -> None:
    client = redis.Redis.from_url(url)
    doomed = list(client.scan_iter(match=made.keys.pattern(), count=500))
    if doomed:
        client.delete(*doomed)
    client.close()


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    if request.param == "memory":
        yield MemoryBroker()
        return
    url = request.getfixturevalue("redis_url")
    made = RedisBroker(url, prefix=f"lim-{uuid.uuid4().hex[:10]}")
    try:
        yield made
    finally:
        await made.close()
        _clean(url, made)


@ASYNCIO
async def test_a_worker_writes_declared_limits_keeping_live_ones(broker: Broker) -> None:
    app = App(broker, settings=Settings())
    app.limit("a", concurrency=2)
    app.limit("b", rate=10, per=60)
    await broker.set_limits({"a": LimitSpec(concurrency=9)})  # an operator's live value
    await app.worker().run(burst=True)
    assert await broker.limit_specs() == {
        "a": LimitSpec(concurrency=9),
        "b": LimitSpec(rate=10, per=60),
    }


@ASYNCIO
async def test_per_key_concurrency_holds_across_a_workers_runners(broker: Broker) -> None:
    app = App(broker, settings=Settings())
    per_customer = app.limit("per-customer", concurrency=1)
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    @app.task(name="work", limits=[per_customer.by("customer")])
    async def work(customer: str, n: int) -> None:
        running[customer] += 1
        running["all"] += 1
        peak[customer] = max(peak[customer], running[customer])
        peak["all"] = max(peak["all"], running["all"])
        await anyio.sleep(0.02)
        running[customer] -= 1
        running["all"] -= 1

    for n in range(4):
        for customer in ("a", "b", "c"):
            await work.enqueue(customer, n)
    with anyio.fail_after(20):
        stats = await app.worker(concurrency=6).run(burst=True)
    assert stats.completed == 12
    assert (peak["a"], peak["b"], peak["c"]) == (1, 1, 1)
    assert peak["all"] >= 2  # per key, not one slot for everyone
    usage = await broker.limit_usage("per-customer")
    assert (usage.running, usage.waiting) == ({}, {})


# -- the commands on real Redis ------------------------------------------------------------------
@pytest.fixture
def on_redis(redis_url: str) -> Iterator[RedisBroker]:
    saved = limits_app.app.broker
    limits_app.app.broker = made = RedisBroker(redis_url, prefix=f"lim-{uuid.uuid4().hex[:10]}")
    try:
        yield made
    finally:
        limits_app.app.broker = saved
        _clean(redis_url, made)


def ok(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def sync_reserve(broker: RedisBroker) -> int:
    async def go() -> int:
        try:
            leases = await broker.reserve(["default"], count=10, lease=30.0, timeout=0)
            return len(leases)
        finally:
            await broker.close()

    return anyio.run(go)


@ASYNCIO
def test_a_paused_limit_holds_jobs_back_and_raising_it_lets_them_go(
    on_redis: RedisBroker, anyio_backend: str
) -> None:
    ok("limit", "set", APP, "exports", "--concurrency", "0")
    for _ in range(2):
        limits_app.export.enqueue_sync("acme")
    limits_app.app.close_sync()
    assert sync_reserve(on_redis) == 0  # held back: waiting in the broker, no attempt spent
    data = json.loads(ok("limits", APP, "--json"))["limits"]
    exports = next(entry for entry in data if entry["name"] == "exports")
    assert spec(exports["live"]) == LimitSpec(concurrency=0)
    assert exports["waiting"] == {"exports:acme": 2}
    assert exports["differs"] is True

    ok("limit", "set", APP, "exports", "--concurrency", "1")
    assert sync_reserve(on_redis) == 1  # one slot: one job back, the other still waits
    ok("limit", "reset", APP, "exports")
    assert sync_reserve(on_redis) == 1
    data = json.loads(ok("limits", APP, "--json"))["limits"]
    exports = next(entry for entry in data if entry["name"] == "exports")
    assert spec(exports["live"]) == LimitSpec(concurrency=2)
    assert exports["running"] == {"exports:acme": 2}
    ok("limit", "delete", APP, "exports", "--yes")
    data = json.loads(ok("limits", APP, "--json"))["limits"]
    exports = next(entry for entry in data if entry["name"] == "exports")
    assert exports["live"] is None
    assert spec(exports["declared"]) == LimitSpec(concurrency=2)


def spec(shown: dict[str, object]) -> LimitSpec:
    """A definition as ``--json`` shows it (defaults may be written out), read back."""
    return msgspec.convert(shown, LimitSpec)
