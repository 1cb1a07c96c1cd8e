"""The limits inside the Redis scripts (``lua/_limits.lua``), directly: the script finds a job's
limit keys in its stored spec whatever its arguments hold, and the place it reads them from is
the one ``JobSpec`` has."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources

import anyio
import msgspec
import pytest

from taskit.job import Job, JobSpec, encode_arguments
from taskit.limits import LimitSpec
from tests.broker._helpers import LONG, new_queue
from tests.broker._redis_kinds import RedisHarness


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Redis broker's transports are asyncio protocols


#: Arguments of every msgpack kind a payload may carry: maps, arrays, bin, floats, big and
#: negative ints, long text, nil and booleans, timestamps (an extension type).
ARGS = (
    {"nested": [1, -5, 2**40, -(2**40), 1.5, None, True, b"\x00\xc0\x90" * 100]},
    "x" * 70_000,
    [datetime(2024, 1, 2, tzinfo=UTC), str(Decimal("1.25")), {"k": {"k": [[], {}]}}],
)


def lua_constant(name: str) -> str:
    text = resources.files("taskit.broker.redis").joinpath("lua", "_limits.lua").read_text()
    found = re.search(rf"^local {name} = (\S+)", text, re.MULTILINE)
    assert found is not None, name
    return found.group(1)


def test_the_script_reads_limits_where_the_spec_has_them() -> None:
    # The spec is an array: its tag first, then the fields in order (``array_like``).
    assert int(lua_constant("SPEC_LIMITS")) == JobSpec.__struct_fields__.index("limits") + 2


@pytest.mark.parametrize("key", ["ex:plain", "ex:\u0410\u0431", "ex:\x90", "ex:a:b c"])
@pytest.mark.anyio
async def test_limit_keys_are_found_past_any_payload(rh: RedisHarness, key: str) -> None:
    broker, q = rh.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=1)})
    jobs = [
        Job(
            id=f"{q}-{i}",
            task="t",
            queue=q,
            payload=encode_arguments(ARGS, {"a": ARGS}),
            created_at=datetime.now(UTC),
            limits=(key,),
            group=group,
        )
        for i, group in enumerate([None, "tenant-1"])
    ]
    await broker.enqueue(jobs)

    got = await broker.reserve([q], count=5, lease=LONG, timeout=0)

    assert [lease.job.id for lease in got] == [jobs[0].id]
    assert (await broker.limit_usage("ex")).waiting == {key: 1}


@pytest.mark.anyio
async def test_a_job_with_a_group_and_no_limits_is_not_limited(rh: RedisHarness) -> None:
    broker, q = rh.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=0)})
    job = Job(id=f"{q}-g", task="t", queue=q, payload=encode_arguments(ARGS, {}),
              created_at=datetime.now(UTC), group="ex:1")  # fmt: skip
    assert not msgspec.msgpack.encode(job).endswith(b"\xc0\x90\xc0")  # the parsing path
    await broker.enqueue([job])

    assert len(await broker.reserve([q], count=5, lease=LONG, timeout=0)) == 1


@pytest.mark.anyio
async def test_a_run_dead_lettered_by_reclaim_frees_its_slots(rh: RedisHarness) -> None:
    """A leased job whose record became unreadable is dead-lettered when its lease expires;
    its slot is freed with it (its held entry names it), and the next job of the key starts."""
    broker, q = rh.broker, new_queue()
    await broker.set_limits({"ex": LimitSpec(concurrency=1)})
    jobs = [
        Job(id=f"{q}-{i}", task="t", queue=q, payload=encode_arguments((), {}),
            created_at=datetime.now(UTC), limits=("ex:k",))
        for i in range(2)
    ]  # fmt: skip
    await broker.enqueue(jobs)
    [held] = await broker.reserve([q], count=5, lease=0.05, timeout=0)
    assert (await broker.limit_usage("ex")).waiting == {"ex:k": 1}
    await rh.client.hset(broker.keys.jobs, held.job.id, b"not a record")
    await anyio.sleep(0.1)  # past the lease

    assert await broker.reclaim([q], lease=LONG) == []

    assert (await broker.limit_usage("ex")).running == {}
    [second] = await broker.reserve([q], count=5, lease=LONG, timeout=0)
    assert second.job.id == jobs[1].id
