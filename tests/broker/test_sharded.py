"""The sharded broker's own rules (``taskit.broker.sharded``, ``taskit.broker.placement``): where
a job is stored, how a workflow finds its shard, and how a waiting reserve fans in across shards.
The contract across shards is checked by the conformance suite on the sharded kinds."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from taskit.broker.base import BrokerOptions
from taskit.broker.memory import MemoryBroker
from taskit.broker.placement import HOME, place, shard_of
from taskit.broker.sharded import ShardedBroker
from taskit.clock import FakeClock
from taskit.dedup import Dedup
from taskit.dependencies import After
from taskit.errors import ConfigurationError
from taskit.job import Job, JobStatus, Lease, OutcomeKind
from tests.broker._helpers import LONG, make_job, new_queue, outcome
from tests.broker._sharded import memory_shards

pytestmark = pytest.mark.anyio

SHARDS = 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def broker() -> AsyncIterator[ShardedBroker]:
    made = memory_shards(FakeClock(), result_ttl=60.0, shards=SHARDS)
    yield made
    await made.close()


def ids_on(shard: int, count: int, stem: str = "j") -> list[str]:
    """``count`` job ids whose shard (of ``SHARDS``) is ``shard``."""
    out: list[str] = []
    n = 0
    while len(out) < count:
        candidate = f"{stem}{n}"
        if shard_of(candidate, SHARDS) == shard:
            out.append(candidate)
        n += 1
    return out


async def holder(broker: ShardedBroker, job_id: str) -> int:
    """The index of the one shard that has ``job_id``."""
    found = [k for k, shard in enumerate(broker.shards) if await shard.get(job_id) is not None]
    assert len(found) == 1, found
    return found[0]


def test_a_jobs_shard_is_the_crc32_of_its_id() -> None:
    assert shard_of("anything", 1) == 0
    for job_id in ("a", "order-1", "ünï", "x" * 200):
        assert shard_of(job_id, 5) == zlib.crc32(job_id.encode()) % 5
    spread = [shard_of(f"job-{i}", 3) for i in range(3000)]
    assert all(900 < spread.count(k) < 1100 for k in range(3)), [spread.count(k) for k in range(3)]


def test_limits_dedup_and_workflows_place_a_job_in_the_home_shard() -> None:
    [plain_id] = ids_on(2, 1)
    q = new_queue()
    plain = make_job(q, job_id=plain_id)
    assert place(plain, SHARDS) == 2
    assert place(msgspec.structs.replace(plain, limits=("api",)), SHARDS) == HOME
    dedup = Dedup("throttle", "tests.noop\0k", 5.0)
    assert place(msgspec.structs.replace(plain, dedup=dedup), SHARDS) == HOME
    assert place(msgspec.structs.replace(plain, workflow="w"), SHARDS) == HOME


def test_a_sharded_broker_needs_two_to_sixty_four_plain_shards() -> None:
    options = BrokerOptions(("result_ttl",))
    with pytest.raises(ConfigurationError, match="2 to 64 shards, got 1"):
        ShardedBroker(options, lambda s: [MemoryBroker()])
    with pytest.raises(ConfigurationError, match="2 to 64 shards, got 65"):
        ShardedBroker(options, lambda s: [MemoryBroker() for _ in range(65)])
    inner = memory_shards(FakeClock(), result_ttl=1.0)
    with pytest.raises(ConfigurationError, match="cannot be sharded itself"):
        ShardedBroker(options, lambda s: [inner, MemoryBroker()])


async def test_jobs_are_stored_in_their_ids_shard_and_found_by_id(broker: ShardedBroker) -> None:
    q = new_queue()
    ids = [i for k in range(SHARDS) for i in ids_on(k, 2)]
    stored = await broker.enqueue([make_job(q, job_id=i) for i in ids])
    assert [job.id for job in stored] == ids
    for job_id in ids:
        assert await holder(broker, job_id) == shard_of(job_id, SHARDS)
        got = await broker.get(job_id)
        assert got is not None
        assert got.status is JobStatus.PENDING
    assert (await broker.stats([q]))[q].queued == len(ids)


async def test_a_limited_job_lives_home_and_is_found_from_any_id(broker: ShardedBroker) -> None:
    q = new_queue()
    [job_id] = ids_on(1, 1)
    job = msgspec.structs.replace(make_job(q, job_id=job_id), limits=("api",))
    await broker.enqueue([job])
    assert await holder(broker, job_id) == HOME
    assert await broker.cancel(job_id) is True
    got = await broker.get(job_id)
    assert got is not None
    assert got.status is JobStatus.CANCELLED


async def test_a_job_waiting_for_a_stored_job_joins_that_jobs_shard(
    broker: ShardedBroker,
) -> None:
    """depends_on a job already stored in shard 2: the new workflow lives there, and the
    parent's end releases the waiting job in the same step, as on one broker."""
    q = new_queue()
    [parent_id] = ids_on(2, 1, "parent")
    [child_id] = ids_on(0, 1, "child")
    await broker.enqueue([make_job(q, job_id=parent_id)])
    child = msgspec.structs.replace(
        make_job(q, job_id=child_id), workflow="w1", after=After((parent_id,))
    )
    await broker.enqueue([child])
    assert await holder(broker, child_id) == 2
    assert (await broker.get(child_id)).status is JobStatus.DEFERRED  # type: ignore[union-attr]
    [held] = await broker.reserve([q], count=1, lease=LONG, timeout=0)
    assert held.job.id == parent_id
    assert await broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]
    assert (await broker.get(child_id)).status is JobStatus.PENDING  # type: ignore[union-attr]
    state = await broker.workflow("w1")
    assert state is not None
    assert {n.id for n in state.nodes} == {parent_id, child_id}
    # A later node of the same workflow goes where the workflow is, whatever its id's shard.
    [late_id] = ids_on(1, 1, "late")
    late = msgspec.structs.replace(make_job(q, job_id=late_id), workflow="w1")
    await broker.enqueue([late])
    assert await holder(broker, late_id) == 2


async def test_a_batch_parent_of_no_workflow_joins_its_childs_shard(
    broker: ShardedBroker,
) -> None:
    q = new_queue()
    [parent_id] = ids_on(1, 1, "p")
    [child_id] = ids_on(2, 1, "c")
    parent = make_job(q, job_id=parent_id)
    child = msgspec.structs.replace(
        make_job(q, job_id=child_id), workflow="w2", after=After((parent_id,))
    )
    await broker.enqueue([parent, child])
    assert await holder(broker, parent_id) == HOME
    assert await holder(broker, child_id) == HOME


async def test_waiting_for_jobs_of_two_shards_is_refused_naming_them(
    broker: ShardedBroker,
) -> None:
    q = new_queue()
    [a] = ids_on(1, 1, "a")
    [b] = ids_on(2, 1, "b")
    await broker.enqueue([make_job(q, job_id=a), make_job(q, job_id=b)])
    child = msgspec.structs.replace(make_job(q), workflow="w3", after=After((a, b)))
    with pytest.raises(ValueError, match=rf"job '{a}' on shard 1, job '{b}' on shard 2"):
        await broker.enqueue([child])
    assert await broker.get(child.id) is None


async def test_a_limited_job_cannot_join_a_workflow_outside_the_home_shard(
    broker: ShardedBroker,
) -> None:
    q = new_queue()
    [parent_id] = ids_on(2, 1, "lp")
    await broker.enqueue([make_job(q, job_id=parent_id)])
    child = msgspec.structs.replace(
        make_job(q), workflow="w4", after=After((parent_id,)), limits=("api",)
    )
    with pytest.raises(ValueError, match="limits are counted on the home shard"):
        await broker.enqueue([child])
    assert await broker.get(child.id) is None


async def test_a_waiting_reserve_wakes_for_a_job_on_any_shard(broker: ShardedBroker) -> None:
    for shard in range(SHARDS):
        q = new_queue()
        [job_id] = ids_on(shard, 1, f"w{shard}-")
        got: list[Lease] = []
        async with anyio.create_task_group() as group:

            async def waiting(queue: str = q, into: list[Lease] = got) -> None:
                into.extend(await broker.reserve([queue], count=1, lease=LONG, timeout=30))

            group.start_soon(waiting)
            await anyio.wait_all_tasks_blocked()
            await broker.enqueue([make_job(q, job_id=job_id)])
        assert [held.job.id for held in got] == [job_id]
        assert got[0].token.startswith(f"{shard}/")
        assert await broker.settle([outcome(got[0], OutcomeKind.COMPLETE)]) == [True]


async def test_leases_beyond_count_from_shards_woken_together_are_handed_back(
    broker: ShardedBroker,
) -> None:
    """Two shards answer a waiting reserve in the same moment (two wake-ups racing): the
    caller keeps ``count`` jobs, the rest are PENDING again at once, their attempt refunded."""
    q = new_queue()
    ids = [*ids_on(0, 2, "t"), *ids_on(1, 2, "t")]
    await broker.enqueue([make_job(q, job_id=i) for i in ids])
    together = [
        msgspec.structs.replace(held, token=f"{k}/{held.token}")
        for k in (0, 1)
        for held in await broker.shards[k].reserve([q], count=2, lease=LONG, timeout=0)
    ]
    assert len(together) == 4
    kept = await broker._kept(together, 3)
    assert kept == together[:3]
    stats = (await broker.stats([q]))[q]
    assert (stats.running, stats.queued) == (3, 1)
    back: Job | None = await broker.get(together[3].job.id)
    assert back is not None
    assert (back.status, back.attempts) == (JobStatus.PENDING, 0)


async def test_a_sharded_broker_has_its_shards_kind_flags(broker: ShardedBroker) -> None:
    assert broker.in_process is True
    assert broker.asyncio_only is False
