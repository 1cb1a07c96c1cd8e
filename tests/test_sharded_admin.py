"""The admin commands on a sharded broker (three hash-tag shards on the real Redis, as
``?shards=3`` makes): counts add up over the shards, the dead letters of every shard are listed,
requeued and purged, a job is found and cancelled by id whatever its shard, a pause holds on
every shard, and ``info`` / ``check`` say how many shards. Each test puts jobs on every shard
(their ids choose it) and checks that they are there before it looks through the CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis

from taskit.broker import from_url
from taskit.broker.placement import HOME, shard_of
from taskit.broker.redis import RedisBroker
from taskit.broker.sharded import ShardedBroker
from taskit.dedup import Throttle
from taskit.job import JobStatus
from tests.apps import ops_app
from tests.test_admin_cli import APP, ok, run_worker, sync, taskit

pytestmark = pytest.mark.redis

SHARDS = 3


@pytest.fixture
def broker(redis_url: str) -> Iterator[ShardedBroker]:
    saved = ops_app.app.broker
    made = from_url(f"{redis_url}?prefix=ops-{uuid.uuid4().hex[:10]}&shards={SHARDS}")
    assert isinstance(made, ShardedBroker)
    ops_app.app.broker = made
    try:
        yield made
    finally:
        ops_app.app.broker = saved
        client = redis.Redis.from_url(redis_url)
        for shard in made.shards:
            assert isinstance(shard, RedisBroker)
            doomed = list(client.scan_iter(match=shard.keys.pattern(), count=500))
            if doomed:
                client.delete(*doomed)
        client.close()


def on_every_shard(task: str, *args: str) -> list[str]:
    """Enqueue ``task`` through the CLI until each shard holds one (at most 60 tries): the ids,
    one per shard, in shard order."""
    found: dict[int, str] = {}
    for _ in range(60):
        job_id = ok("enqueue", APP, task, *args).strip()
        found.setdefault(shard_of(job_id, SHARDS), job_id)
        if len(found) == SHARDS:
            return [found[k] for k in range(SHARDS)]
    raise AssertionError(f"60 enqueues reached only shards {sorted(found)}")


def per_shard(broker: ShardedBroker, queue: str = "default") -> list[tuple[int, int]]:
    """(queued, dead) of ``queue`` on each shard, asked of the shard itself."""

    async def read() -> list[tuple[int, int]]:
        out = []
        for shard in broker.shards:
            stats = (await shard.stats([queue])).get(queue)
            out.append((0, 0) if stats is None else (stats.queued, stats.dead))
        return out

    return sync(read)


def test_info_and_check_add_up_over_the_shards_and_say_how_many(broker: ShardedBroker) -> None:
    ids = on_every_shard("ops.add", "--args", "[1, 2]")
    queued = per_shard(broker)
    assert all(q > 0 for q, _ in queued)  # a sum over shards, not one shard's count
    total = sum(q for q, _ in queued)
    data = json.loads(ok("info", APP, "--json"))
    assert data["queues"]["default"]["queued"] == total >= len(ids)
    assert data["shards"] == SHARDS
    text = ok("info", APP)
    assert text.splitlines()[1].split() == ["default", str(total), "0", "0", "0", "0", "0"]
    assert f"shards: {SHARDS}" in text.splitlines()
    checked = ok("check", APP, "--min-workers", "0")
    assert checked.startswith(f"ok: broker reachable ({SHARDS} shards), 0 live worker(s)")


def test_a_job_is_found_and_cancelled_by_id_whatever_its_shard(broker: ShardedBroker) -> None:
    for job_id in on_every_shard("ops.add", "--args", "[1, 2]"):
        assert json.loads(ok("job", APP, job_id, "--json"))["status"] == "pending"
        assert ok("cancel", APP, job_id).strip() == f"cancelled {job_id}"
        assert json.loads(ok("job", APP, job_id, "--json"))["status"] == "cancelled"
        assert taskit("cancel", APP, job_id).exit_code == 1


def test_a_job_placed_in_the_home_shard_is_found_whatever_its_id(broker: ShardedBroker) -> None:
    # A job with a dedup window lives in the home shard; ids that hash elsewhere are found too.
    add = ops_app.app.get_task("ops.add")
    elsewhere = []
    for i in range(30):
        job = sync(add.options(dedup=Throttle(60, key="b")).enqueue, 1, i)
        if shard_of(job.id, SHARDS) != HOME:
            elsewhere.append(job.id)
    assert elsewhere
    assert per_shard(broker)[HOME][0] == 30  # every one in the home shard
    for job_id in elsewhere:
        assert json.loads(ok("job", APP, job_id, "--json"))["status"] == "pending"
    assert ok("cancel", APP, elsewhere[0]).strip() == f"cancelled {elsewhere[0]}"


def test_dead_letters_of_every_shard_listed_requeued_and_purged(broker: ShardedBroker) -> None:
    ids = on_every_shard("ops.boom")
    run_worker()
    assert all(dead > 0 for _, dead in per_shard(broker))
    listed = json.loads(ok("dlq", "list", APP, "--json"))
    assert set(ids) <= {d["id"] for d in listed}
    total = len(listed)
    assert total == sum(dead for _, dead in per_shard(broker))
    # One by id from each non-home shard, then the rest with --all.
    assert ok("dlq", "requeue", APP, ids[1], ids[2]).strip() == "requeued 2 jobs"
    for job_id in ids[1:]:
        job = sync(ops_app.app.get_job, job_id)
        assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    rest = total - 2
    assert ok("dlq", "requeue", APP, "--all").strip() == f"requeued {rest} job{'s' * (rest != 1)}"
    assert all(dead == 0 for _, dead in per_shard(broker))
    run_worker()
    assert len(json.loads(ok("dlq", "list", APP, "--json"))) == total
    assert ok("dlq", "purge", APP, "--yes").strip() == f"deleted {total} dead letters"
    assert json.loads(ok("dlq", "list", APP, "--json")) == []


def test_a_pause_holds_on_every_shard_and_purge_empties_them_all(broker: ShardedBroker) -> None:
    assert ok("pause", APP, "default").strip() == "paused default"
    on_every_shard("ops.add", "--args", "[1, 2]")

    async def reserve_each() -> list[int]:
        got = []
        for shard in broker.shards:
            got.append(len(await shard.reserve(["default"], count=100, lease=30, timeout=0)))
        return got

    assert sync(reserve_each) == [0] * SHARDS  # every shard's own reserve holds back
    assert json.loads(ok("info", APP, "--json"))["paused"] == ["default"]
    assert ok("resume", APP, "default").strip() == "resumed default"
    assert sync(lambda: broker.paused_queues()) == frozenset()
    total = sum(q for q, _ in per_shard(broker))
    assert ok("purge", APP, "default", "--yes").strip() == f"deleted {total} waiting jobs"
    assert per_shard(broker) == [(0, 0)] * SHARDS
