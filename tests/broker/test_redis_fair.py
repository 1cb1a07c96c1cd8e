"""The Redis broker's fair-turn keys (``keys``: groups, turns, groupof): a queue without groups
never creates them, every path that ends or removes a grouped job cleans them, and the layout
checks know their types."""

from __future__ import annotations

import msgspec
import pytest

from taskit.broker.redis.keys import QUEUE_KINDS
from taskit.errors import BrokerError
from taskit.job import Job, OutcomeKind
from tests.broker._helpers import LONG, make_job, new_queue, outcome
from tests.broker._redis_kinds import RedisHarness

pytestmark = pytest.mark.anyio

FAIR = ("groups", "turns", "groupof")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def job(queue: str, group: str | None) -> Job:
    return msgspec.structs.replace(make_job(queue), group=group)


async def fair_keys_left(rh: RedisHarness, queue: str) -> int:
    return int(await rh.client.exists(*rh.broker.keys.of(queue, FAIR)))


async def test_a_queue_without_groups_never_writes_the_fair_keys(rh: RedisHarness) -> None:
    q = new_queue()
    await rh.broker.enqueue([job(q, None) for _ in range(5)], delays=[0, 0, 0, 0, 0.001])
    leases = await rh.broker.reserve([q], count=3, lease=LONG, timeout=0)
    await rh.broker.settle([outcome(leases[0], OutcomeKind.RETRY, error="x"),
                            outcome(leases[1], OutcomeKind.RELEASE)])  # fmt: skip

    assert len(await rh.broker.reserve([q], count=10, lease=LONG, timeout=0)) >= 3
    assert await fair_keys_left(rh, q) == 0


async def test_every_way_a_grouped_job_ends_cleans_its_group_entries(rh: RedisHarness) -> None:
    q = new_queue()
    jobs = [job(q, f"g{i % 3}") for i in range(9)]
    await rh.broker.enqueue(jobs[:8])
    await rh.broker.enqueue(jobs[8:], delays=[60.0])  # purged while scheduled
    assert await rh.client.hlen(rh.broker.keys.queue(q, "groupof")) == 9
    assert await rh.broker.cancel(jobs[0].id)
    leases = await rh.broker.reserve([q], count=5, lease=LONG, timeout=0)
    kinds = [OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.DEAD_LETTER, OutcomeKind.CANCEL,
             OutcomeKind.RETRY]  # fmt: skip
    await rh.broker.settle(
        [outcome(lease, kind) for lease, kind in zip(leases, kinds, strict=True)]
    )
    [again] = await rh.broker.reserve([q], count=1, lease=LONG, timeout=0)  # the retried one
    await rh.broker.settle([outcome(again, OutcomeKind.COMPLETE)])

    assert await rh.broker.purge(q) == 3  # two ready, one scheduled
    assert await rh.broker.purge_dead(q) == 1
    assert await fair_keys_left(rh, q) == 0


async def test_a_replaced_dead_letter_leaves_no_group_entry(rh: RedisHarness) -> None:
    q = new_queue()
    first = job(q, "a")
    await rh.broker.enqueue([first])
    [held] = await rh.broker.reserve([q], count=1, lease=LONG, timeout=0)
    await rh.broker.settle([outcome(held, OutcomeKind.DEAD_LETTER, error="x")])

    await rh.broker.enqueue([msgspec.structs.replace(first, group=None)])  # same id, no group

    assert await rh.client.hlen(rh.broker.keys.queue(q, "groupof")) == 0
    [again] = await rh.broker.reserve([q], count=1, lease=LONG, timeout=0)
    assert again.job.group is None
    await rh.broker.settle([outcome(again, OutcomeKind.COMPLETE)])
    assert await fair_keys_left(rh, q) == 0


async def test_the_layout_knows_the_fair_keys(rh: RedisHarness) -> None:
    k = rh.broker.keys
    assert {kind: QUEUE_KINDS[kind] for kind in FAIR} == {
        "groups": "zset", "turns": "list", "groupof": "hash"
    }  # fmt: skip
    assert [k.kind_of(key) for key in k.of("a:b", FAIR)] == ["zset", "list", "hash"]


async def test_a_damaged_turns_key_is_refused_and_nothing_changes(rh: RedisHarness) -> None:
    q = new_queue()
    await rh.broker.enqueue([job(q, "a"), job(q, None)])
    await rh.client.delete(rh.broker.keys.queue(q, "turns"))
    await rh.client.set(rh.broker.keys.queue(q, "turns"), "x")

    with pytest.raises(BrokerError, match="turns' holds a string where taskit keeps a list"):
        await rh.broker.reserve([q], count=2, lease=LONG, timeout=0)

    await rh.client.delete(rh.broker.keys.queue(q, "turns"))
    assert (await rh.broker.stats([q]))[q].queued == 2  # nothing was taken out
