"""The least-privilege Redis user of docs/deployment.md, on a private ``redis-server``: the ACL
lines are read from the doc itself and created as they stand, then a representative part of
the broker runs as that user (producers async and sync, a worker, retries and dead letters,
cancel, workflows, limits, browsing, counts, streams, pause, a blocking wait and its early end).
Then: each rule taken away fails with a ``BrokerAuthenticationError`` naming what was refused,
and ``CLIENT SETNAME`` refused changes nothing."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis

from taskit import App, BrokerAuthenticationError
from taskit.broker.browse import Listing
from taskit.broker.redis import RedisBroker
from taskit.canvas import chain
from taskit.limits import LimitSpec
from tests.broker._helpers import make_job, new_queue
from tests.broker._redis_kinds import OwnRedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
PASSWORD = "acl-Pa55word"
USER = "taskit"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def documented_rules() -> list[list[str]]:
    """The ``ACL SETUSER`` lines of the doc's least-privilege section, as argument lists."""
    text = DOC.read_text()
    section = text.split("## A least-privilege Redis user", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", section, re.DOTALL)
    assert block is not None, "docs/deployment.md lost its ACL block"
    lines = [line.split() for line in block.group(1).splitlines() if line.strip()]
    assert lines
    assert all(line[:3] == ["ACL", "SETUSER", USER] for line in lines)
    return [[w.replace(">CHANGE-ME", f">{PASSWORD}") for w in line] for line in lines]


@pytest.fixture(scope="module")
def server() -> Iterator[OwnRedisServer]:
    made = OwnRedisServer()
    try:
        made.start()
        yield made
    finally:
        made.stop()


@pytest.fixture
def admin(server: OwnRedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=server.port)
    for rule in documented_rules():
        client.execute_command(*rule)
    try:
        yield client
    finally:
        client.execute_command("ACL", "DELUSER", USER)
        client.flushall()
        client.close()


def url(server: OwnRedisServer) -> str:
    return f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0"


def test_the_doc_names_the_hash_tag_pattern() -> None:
    rules = documented_rules()
    assert "~{taskit}*" in rules[0]
    assert not any(w.startswith("+@") or w in ("allkeys", "allcommands") for r in rules for w in r)


async def test_the_documented_user_runs_the_broker(
    server: OwnRedisServer, admin: redis.Redis
) -> None:
    app = App(url(server))
    per_customer = app.limit("per-customer", concurrency=1)
    seen: list[str] = []

    @app.task(name="ok", limits=[per_customer.by("customer")])
    async def ok(customer: str) -> str:
        seen.append(customer)
        return customer

    @app.task(name="boom", max_retries=0)
    async def boom() -> None:
        raise RuntimeError("always")

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    broker = app.broker
    assert isinstance(broker, RedisBroker)
    try:
        first = await ok.enqueue("a")
        by_thread = await anyio.to_thread.run_sync(lambda: ok.enqueue_sync("b"))  # sync path
        dead = await boom.enqueue()
        later = await ok.schedule(3600.0, "c")
        assert await app.cancel(later.id)
        flow = await chain(add.s(1, 2), add.step(3)).enqueue()
        await broker.set_limits({"other": LimitSpec(concurrency=2)})
        assert await app.pause("default")
        assert await app.resume("default")

        with anyio.fail_after(20):
            stats = await app.worker(concurrency=4).run(burst=True)
        assert stats.completed == 4  # two ok, the chain's two steps
        assert sorted(seen) == ["a", "b"]
        assert (await app.result(first.id, timeout=5)).value == "a"
        assert (await app.result(by_thread.id, timeout=5)).value == "b"
        assert await flow.result(timeout=5) == 6

        counts = (await app.stats())["default"]
        assert (counts.completed, counts.dead) == (4, 1)
        [letter] = await broker.dead_letters("default")
        assert letter.id == dead.id
        page = await broker.list_jobs("default", Listing.COMPLETED)
        assert {job.id for job in page.jobs} >= {first.id, by_thread.id}
        assert await broker.counts(time.time() - 300)
        assert (await broker.limit_usage("per-customer")).running == {}
        assert await app.requeue_dead("default") == 1

        stream = new_queue()
        entry = await broker.stream_add(stream, b"hello", maxlen=100)
        [(got_id, body)] = await broker.stream_read(stream, "g", "c1", count=10, claim_after=60)
        assert (got_id, body) == (entry, b"hello")
        assert await broker.stream_ack(stream, "g", [got_id]) == 1

        # A blocking wait (BLPOP) that a job ends, and one cut short (CLIENT UNBLOCK).
        queue = new_queue()
        async with anyio.create_task_group() as tg:

            async def wait_then_enqueue() -> None:
                await anyio.wait_all_tasks_blocked()
                await broker.enqueue([make_job(queue)])

            tg.start_soon(wait_then_enqueue)
            assert await broker.reserve([queue], count=1, lease=30, timeout=5)
        with anyio.move_on_after(0.2):
            await broker.reserve([new_queue()], count=1, lease=30, timeout=5)
        assert await broker.claim("nightly", 5.0)  # the scheduler's claim
        assert await broker.get(first.id) is not None
    finally:
        await app.close()


async def test_the_documented_user_runs_the_admin_calls(
    server: OwnRedisServer, admin: redis.Redis
) -> None:
    """What ``taskit`` admin commands and the dashboard call, beside the lifecycle above."""
    broker = RedisBroker(url(server))
    queue = new_queue()
    try:
        [later] = await broker.enqueue([make_job(queue)], delays=[3600.0])
        assert await broker.promote(later.id)
        [lease] = await broker.reserve([queue], count=1, lease=0.05, timeout=0)
        assert await broker.extend([lease], lease=0.05)
        assert await broker.set_progress([]) == []
        await anyio.sleep(0.1)  # the lease runs out on the server's clock
        [back] = await broker.reclaim([queue], lease=30.0)
        assert back.job.id == later.id
        assert await broker.cancel(later.id)
        assert await broker.forget([later.id]) == 0  # still running (its cancel asked): kept
        await broker.enqueue([make_job(queue) for _ in range(3)])
        assert await broker.pause_queue(queue)
        assert queue in await broker.paused_queues()
        assert await broker.resume_queue(queue)
        assert await broker.purge(queue) == 3
        assert await broker.purge_dead(queue) == 0
        assert await broker.limit_specs() == {}
        await broker.announce("w-1", b"record", ttl=5.0)
        assert await broker.live() == {"w-1": b"record"}
        await broker.withdraw("w-1")
        assert await broker.workflow("no-such-workflow") is None
        assert await broker.workflow_results("no-such-workflow", ["x"]) == [None]
        assert await broker.cancel_workflow("no-such-workflow") == 0
        assert (await broker.begin_once("k", "t", hold=5.0)).value == "taken"
        assert await broker.end_once("k", "t", done_for=5.0)
    finally:
        await broker.close()


async def test_clients_are_named_when_the_user_may(
    server: OwnRedisServer, admin: redis.Redis
) -> None:
    admin.execute_command("ACL", "SETUSER", USER, "+client|setname")
    broker = RedisBroker(url(server))
    try:
        await broker.enqueue([make_job(new_queue())])
        names = {c["name"] for c in admin.client_list() if c.get("user") == USER}
        assert names == {"taskit"}
    finally:
        await broker.close()


async def test_without_client_setname_every_connection_kind_works_and_it_is_logged_once(
    server: OwnRedisServer, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    queue = new_queue()
    broker = RedisBroker(url(server))
    caplog.set_level(logging.DEBUG, logger="taskit.broker.redis.transport.handshake")
    try:
        await broker.enqueue([make_job(queue)])  # commands
        assert await broker.reserve([queue], count=1, lease=30, timeout=0)
        with anyio.move_on_after(0.2):  # waits
            await broker.reserve([queue], count=1, lease=30, timeout=5)
        assert await anyio.to_thread.run_sync(broker.enqueue_blocking, [make_job(queue)])
        assert await anyio.to_thread.run_sync(broker.enqueue_blocking, [make_job(queue)])
    finally:
        await broker.close()
    said = [r.getMessage() for r in caplog.records if "CLIENT|SETNAME" in r.getMessage()]
    assert len(said) == 3  # once per client: commands, waits, the pooled blocking one
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "SETNAME" in r.getMessage())
    names = {c.get("name") for c in admin.client_list() if c.get("user") == USER}
    assert names <= {""}  # unnamed, and working


@pytest.mark.parametrize(
    ("taken", "named"),
    [
        ("-evalsha", "'evalsha'"),
        ("-hset", "script enqueue-plain refused HSET"),  # inside a script: the script, its line
        ("-blpop", "'blpop'"),
        ("-xadd", "XADD"),
        ("-sadd", "script enqueue-plain refused SADD"),  # a command named on its line
        # Inside the reserve script, whose reply the fast path reads by hand (no BLPOP): the
        # same naming as every other script call, and as fatal to a worker.
        ("-smembers", "script reserve refused SMEMBERS"),
    ],
)
async def test_a_missing_permission_names_what_was_refused(
    server: OwnRedisServer, admin: redis.Redis, taken: str, named: str
) -> None:
    admin.execute_command("ACL", "SETUSER", USER, taken)
    queue = new_queue()
    broker = RedisBroker(url(server))
    calls = {
        "-blpop": lambda: broker.reserve([queue], count=1, lease=30, timeout=1),
        "-xadd": lambda: broker.stream_add(queue, b"x", maxlen=10),
        "-smembers": lambda: broker.reserve([queue], count=1, lease=30, timeout=0),
    }
    call = calls.get(taken, lambda: broker.enqueue([make_job(queue)]))
    try:
        with pytest.raises(BrokerAuthenticationError) as caught:
            await call()
    finally:
        await broker.close()
    message = str(caught.value)
    assert "refused a command to this user" in message
    assert named in message
    assert PASSWORD not in message


async def test_keys_outside_the_hash_tag_are_refused_by_name(
    server: OwnRedisServer, admin: redis.Redis
) -> None:
    broker = RedisBroker(url(server), prefix="other")  # {other}: not the user's keys
    try:
        with pytest.raises(BrokerAuthenticationError, match="refused a command to this user"):
            await broker.enqueue([make_job(new_queue())])
    finally:
        await broker.close()


async def test_a_worker_whose_reserve_is_refused_stops_with_the_error_named(
    server: OwnRedisServer, admin: redis.Redis
) -> None:
    """A permission missing inside the reserve script is fatal to a worker, as every refused
    permission is (waiting does not heal it): it stops at once with the error, naming it,
    rather than backing off through an "outage" for ever."""
    admin.execute_command("ACL", "SETUSER", USER, "-smembers")
    app = App(url(server))
    refused: list[BaseException] = []
    try:
        with anyio.fail_after(10):
            try:
                await app.worker(concurrency=1).run(burst=True)
            except* BrokerAuthenticationError as group:  # out of the worker's task groups
                refused.extend(_leaves(group))
    finally:
        await app.close()
    assert len(refused) == 1
    assert "script reserve refused SMEMBERS" in str(refused[0])


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside ``error``'s nested groups (``error`` itself if not a group)."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]
