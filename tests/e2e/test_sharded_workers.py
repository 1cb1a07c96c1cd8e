"""End to end on a sharded broker (``?shards=3``): `taskit worker` subprocesses drain what several
producers enqueue (each an App of this process with a broker of its own, enqueuing one job and
batches in turn), and every job acknowledged to a producer runs exactly once, counted in a
ledger list that the handler writes (tests/apps/e2e_app.py).

* On the shared Redis at 127.0.0.1:6379: three hash-tag shards on one server, a valid layout;
  every shard gets jobs and keys (the default suite).
* On the session's Redis Cluster (3 masters, tests/topology): the run's keys counted on each
  master (each holds one shard's); a manual failover of the home shard's master, and a
  migration of another shard's slot, while producers and one worker run: no acknowledged job
  lost, every one completed, the worker never restarted. A job whose enqueue raised
  ``BrokerOutcomeUnknownError`` is not acknowledged (counted apart); any other error fails.

Each test works under a key prefix of its own (so in slots of its own on the cluster); its
ledger is a key of its own on the shared Redis.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import pytest
import redis

from taskit import App, BrokerError, BrokerOutcomeUnknownError
from taskit.broker.placement import shard_of
from taskit.broker.redis.shards import shard_prefixes
from tests.e2e.helpers import WorkerProcess, worker_process
from tests.topology import RedisCluster, slot_of

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.apps.e2e_app:app"
SHARDS = 3
PRODUCERS = 3
#: Jobs each producer enqueues in the drain test.
EACH = 100
#: Jobs run before a move starts, and after it (acknowledged and run) before the load stops.
AROUND_MOVE = 40
#: Seconds any one phase may take.
LIMIT = 60.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client


@dataclass
class Ledger:
    """The list the handlers push ``tag|pid|time`` to."""

    client: redis.Redis
    key: str

    def entries(self) -> list[tuple[str, int]]:
        out = []
        for raw in self.client.lrange(self.key, 0, -1):
            tag, pid, _ = raw.decode().rsplit("|", 2)
            out.append((tag, int(pid)))
        return out

    async def runs(self) -> int:
        return int(await anyio.to_thread.run_sync(self.client.llen, self.key))

    async def until(self, done: Callable[[int], bool], what: str) -> None:
        """Poll (the runs happen in another process) until ``done(runs)``; fail naming
        ``what`` after ``LIMIT`` seconds."""
        try:
            with anyio.fail_after(LIMIT):
                while not done(await self.runs()):  # noqa: ASYNC110 (no event crosses processes)
                    await anyio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"{what}: {await self.runs()} runs after {LIMIT} s") from None


@dataclass
class Run:
    url: str  # the broker URL: ?prefix= and ?shards=3
    prefix: str
    ledger: Ledger
    ledger_url: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "TASKIT_BROKER_URL": self.url,
            "E2E_LEDGER_URL": self.ledger_url,
            "E2E_LEDGER": self.ledger.key,
        }


@dataclass
class Load:
    acked: dict[str, str] = field(default_factory=dict)  # job id -> tag
    unknown: int = 0  # jobs of enqueues whose outcome is unknown (not acknowledged)
    errors: list[str] = field(default_factory=list)
    _more: anyio.Event = field(default_factory=anyio.Event)

    def ack(self, job_id: str, tag: str) -> None:
        self.acked[job_id] = tag
        self._more.set()
        self._more = anyio.Event()

    async def until(self, acked: int) -> None:
        with anyio.fail_after(LIMIT):
            while len(self.acked) < acked:
                await self._more.wait()


@dataclass
class Counted:
    """What became of the acknowledged jobs once the load stopped and the worker drained."""

    acked: int
    lost: list[str]
    completed: int
    runs: Counter[str]  # tag -> handler runs
    pids: set[int]

    @property
    def twice(self) -> list[str]:
        return [tag for tag, n in self.runs.items() if n > 1]


def _new_run(url: str, ledger_url: str, client: redis.Redis) -> Run:
    prefix = f"taskit-s-{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in url else "?"
    return Run(
        f"{url}{sep}prefix={prefix}&shards={SHARDS}",
        prefix,
        Ledger(client, f"{prefix}-ledger"),
        ledger_url,
    )


@pytest.fixture
def ledger_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def on_redis(redis_url: str, ledger_client: redis.Redis) -> Iterator[Run]:
    run = _new_run(redis_url, redis_url, ledger_client)
    try:
        yield run
    finally:
        doomed = [
            run.ledger.key,
            *ledger_client.scan_iter(match="{" + run.prefix + "*", count=1000),
        ]
        ledger_client.delete(*doomed)


@pytest.fixture
def on_cluster(
    redis_cluster: RedisCluster, redis_url: str, ledger_client: redis.Redis
) -> Iterator[Run]:
    run = _new_run(redis_cluster.url(), redis_url, ledger_client)
    try:
        yield run
    finally:
        ledger_client.delete(run.ledger.key)  # the cluster's keys go with the session's cluster


@pytest.fixture
async def reader() -> AsyncIterator[Callable[[Run], App]]:
    made: list[App] = []

    def make(run: Run) -> App:
        made.append(App(run.url))
        return made[-1]

    try:
        yield make
    finally:
        for app in made:
            await app.close()


async def produce(
    url: str, name: str, load: Load, *, jobs: int | None = None, stop: anyio.Event | None = None
) -> None:
    """Enqueue ``e2e.record`` jobs tagged ``<name>-<i>`` on an App of its own: one job, then a
    batch of five, in turn; ``jobs`` of them, or until ``stop``."""
    app = App(url)
    record = app.remote("e2e.record")
    sent = 0
    try:
        for turn in range(10**9):
            if (jobs is not None and sent >= jobs) or (stop is not None and stop.is_set()):
                return
            size = 1 if turn % 2 == 0 else 5
            if jobs is not None:
                size = min(size, jobs - sent)
            tags = [f"{name}-{sent + k}" for k in range(size)]
            sent += len(tags)
            try:
                if len(tags) == 1:
                    done = [await record.enqueue(tags[0])]
                else:
                    done = await app.enqueue_many([record.prepare(tag) for tag in tags])
            except BrokerOutcomeUnknownError:
                load.unknown += len(tags)
                continue
            except BrokerError as exc:
                load.errors.append(f"{name}: {exc}")
                await anyio.sleep(0.05)
                continue
            for job, tag in zip(done, tags, strict=True):
                load.ack(job.id, tag)
            if stop is not None:
                await anyio.sleep(0.005)  # a steady load, not a flood
    finally:
        await app.close()


async def count(app: App, run: Run, load: Load) -> Counted:
    """Wait for every acknowledged job to finish (a lost one is not waited for), then count."""
    lost, completed = [], 0
    with anyio.fail_after(LIMIT):
        for job_id in load.acked:
            if await app.get_job(job_id) is None:
                lost.append(job_id)
                continue
            result = await app.result(job_id, timeout=LIMIT)
            completed += result.success
    entries = await anyio.to_thread.run_sync(run.ledger.entries)
    return Counted(
        acked=len(load.acked),
        lost=lost,
        completed=completed,
        runs=Counter(tag for tag, _ in entries),
        pids={pid for _, pid in entries},
    )


def exactly_once(counted: Counted, load: Load) -> None:
    assert counted.lost == [], f"{len(counted.lost)} of {counted.acked} acknowledged jobs lost"
    assert counted.completed == counted.acked
    assert all(counted.runs[tag] == 1 for tag in load.acked.values()), [
        (tag, counted.runs[tag]) for tag in load.acked.values() if counted.runs[tag] != 1
    ][:5]
    assert counted.twice == []


def keys_per_master(cluster: RedisCluster, prefix: str) -> dict[str, int]:
    """How many keys of ``prefix``'s shards each master holds."""
    out = {}
    for node in cluster.masters():
        client = node.client()
        try:
            out[node.address] = sum(
                1 for _ in client.scan_iter(match="{" + prefix + "*", count=1000)
            )
        finally:
            client.close()
    return out


# -- on one Redis -----------------------------------------------------------------------------
async def test_workers_drain_three_shards_of_one_redis_exactly_once(
    on_redis: Run, reader: Callable[[Run], App]
) -> None:
    load = Load()
    with (
        worker_process(APP, on_redis.env, "-c", "8") as one,
        worker_process(APP, on_redis.env, "-c", "8") as two,
    ):
        async with anyio.create_task_group() as group:
            for p in range(PRODUCERS):
                group.start_soon(partial(produce, on_redis.url, f"p{p}", load, jobs=EACH))
        counted = await count(reader(on_redis), on_redis, load)
        assert one.proc.poll() is None
        assert two.proc.poll() is None
    assert load.errors == []
    assert load.unknown == 0
    assert counted.acked == PRODUCERS * EACH
    exactly_once(counted, load)
    # Every shard had jobs and holds their keys (the job ids chose them).
    assert set(Counter(shard_of(job_id, SHARDS) for job_id in load.acked)) == {0, 1, 2}
    client = on_redis.ledger.client
    for prefix in shard_prefixes(on_redis.prefix, SHARDS):
        assert any(True for _ in client.scan_iter(match="{" + prefix + "}:*", count=1000)), prefix


# -- on a Redis Cluster -----------------------------------------------------------------------
async def test_a_sharded_worker_on_a_cluster_spreads_the_keys_over_every_master(
    redis_cluster: RedisCluster, on_cluster: Run, reader: Callable[[Run], App]
) -> None:
    load = Load()
    with worker_process(APP, on_cluster.env, "-c", "8") as worker:
        async with anyio.create_task_group() as group:
            for p in range(PRODUCERS):
                group.start_soon(partial(produce, on_cluster.url, f"p{p}", load, jobs=EACH))
        counted = await count(reader(on_cluster), on_cluster, load)
        assert worker.proc.poll() is None
    assert load.errors == []
    assert load.unknown == 0
    exactly_once(counted, load)
    assert counted.pids == {worker.pid}
    owners = {
        redis_cluster.owner_of("{" + prefix + "}").address
        for prefix in shard_prefixes(on_cluster.prefix, SHARDS)
    }
    assert len(owners) == SHARDS  # one shard per master
    spread = keys_per_master(redis_cluster, on_cluster.prefix)
    print(f"{counted.acked} jobs; keys per master: {spread}")
    assert sorted(spread) == sorted(owners)
    assert all(n > 0 for n in spread.values()), spread


async def _moved_under_load(
    run: Run, app: App, move: Callable[[], Any]
) -> tuple[Counted, Load, WorkerProcess]:
    """Producers and one worker on ``run``; ``move`` (blocking) once jobs run; the load goes
    on until ``AROUND_MOVE`` more were acknowledged and run; then everything is counted."""
    load, stop = Load(), anyio.Event()
    with worker_process(APP, run.env, "-c", "8") as worker:
        async with anyio.create_task_group() as group:
            for p in range(PRODUCERS):
                group.start_soon(partial(produce, run.url, f"p{p}", load, stop=stop))
            await run.ledger.until(lambda n: n >= 3 * AROUND_MOVE, "jobs running")
            began, started = len(load.acked), time.monotonic()
            await anyio.to_thread.run_sync(move)
            took = time.monotonic() - started
            acked, ran = len(load.acked), await run.ledger.runs()
            await run.ledger.until(lambda n: n >= ran + AROUND_MOVE, "jobs running after the move")
            await load.until(acked + AROUND_MOVE)
            stop.set()
        counted = await count(app, run, load)
        assert worker.proc.poll() is None, worker.log  # never restarted
    print(
        f"move took {took:.2f} s; acked {counted.acked} ({began} before it began, {acked} "
        f"before it returned), "
        f"unknown {load.unknown}, lost {len(counted.lost)}, completed {counted.completed}, "
        f"run twice {len(counted.twice)}"
    )
    return counted, load, worker


async def test_a_failover_of_the_home_shards_master_under_load_loses_nothing(
    redis_cluster: RedisCluster, on_cluster: Run, reader: Callable[[Run], App]
) -> None:
    home = shard_prefixes(on_cluster.prefix, SHARDS)[0]
    slot = slot_of("{" + home + "}")
    before = redis_cluster.owner(slot)
    counted, load, worker = await _moved_under_load(
        on_cluster, reader(on_cluster), lambda: redis_cluster.failover(slot)
    )
    assert redis_cluster.owner(slot) is not before
    assert load.errors == [], load.errors[:5]
    exactly_once(counted, load)
    assert counted.pids == {worker.pid}


async def test_a_shards_slot_migrated_under_load_loses_nothing(
    redis_cluster: RedisCluster, on_cluster: Run, reader: Callable[[Run], App]
) -> None:
    other = shard_prefixes(on_cluster.prefix, SHARDS)[1]
    slot = slot_of("{" + other + "}")
    before = redis_cluster.owner(slot)
    counted, load, worker = await _moved_under_load(
        on_cluster, reader(on_cluster), lambda: redis_cluster.migrate_slot(slot, batch=1)
    )
    assert redis_cluster.owner(slot) is not before
    assert load.errors == [], load.errors[:5]
    exactly_once(counted, load)
    assert counted.pids == {worker.pid}
