"""The Redis broker's failed attempts (``Job.failures``), kept in the ``{p}:err`` value by
``lua/_attempts.lua``: values written before attempts were kept, values in every msgpack width
the script writes, and damaged values. The contract itself is in test_conformance_failures."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
import pytest

from taskit.broker.redis.records import decode_error, encode_error, join_record, split_record
from taskit.job import MAX_FAILURES, Job, JobStatus, Outcome, OutcomeKind
from tests.broker._helpers import make_job
from tests.broker._redis_kinds import RedisHarness

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def get(rh: RedisHarness, job_id: str) -> Job:
    job = await rh.broker.get(job_id)
    assert job is not None
    return job


async def running_as(rh: RedisHarness, state: bytes, err: bytes | None = None) -> str:
    """A job of queue ``q`` made RUNNING under lease token ``tok|q`` with the state string
    ``state`` written in place (and error value ``err``, if given); its id."""
    job = make_job("q")
    await rh.broker.enqueue([job])
    _, spec = split_record(await rh.client.hget(rh.broker.keys.jobs, job.id))
    await rh.client.hset(rh.broker.keys.jobs, job.id, join_record(state, spec))
    if err is not None:
        await rh.client.hset(rh.broker.keys.err, job.id, err)
    await rh.client.lrem(rh.broker.keys.fifo("q"), 1, job.id)
    return job.id


async def retry(rh: RedisHarness, job_id: str, **fields: object) -> None:
    outcome = Outcome(job_id=job_id, token="tok|q", kind=OutcomeKind.RETRY, delay=60.0, **fields)
    assert await rh.broker.settle([outcome]) == [True]


async def test_an_error_value_written_before_attempts_were_kept_still_reads(
    rh: RedisHarness,
) -> None:
    """Three items, as every release before ``failures`` wrote: the job reads with its error
    and no failures; its next failure replaces the error and starts the history; a failure
    sent without an error keeps the old one."""
    old = encode_error("old", "OldError", "old tb")
    first = await running_as(rh, b"running|1|0||tok||||||q", old)
    second = await running_as(rh, b"running|1|0||tok||||||q", old)

    job = await get(rh, first)
    assert (job.error, job.error_type, job.traceback, job.failures) == (
        "old",
        "OldError",
        "old tb",
        (),
    )

    await retry(rh, first, error="new", error_type="NewError")
    await retry(rh, second)

    replaced, kept = await get(rh, first), await get(rh, second)
    assert (replaced.error, replaced.error_type, replaced.traceback) == ("new", "NewError", None)
    assert [(a.number, a.error, a.error_type) for a in replaced.failures] == [
        (1, "new", "NewError")
    ]
    assert (kept.error, kept.error_type, kept.traceback) == ("old", "OldError", "old tb")
    assert [(a.number, a.error, a.error_type) for a in kept.failures] == [(1, None, None)]


@pytest.mark.parametrize("attempts", [5, 200, 300, 70_000])
async def test_the_script_writes_numbers_and_times_in_every_width(
    rh: RedisHarness, attempts: int
) -> None:
    """An attempt's number in its shortest msgpack form (1, 2, 3 or 5 bytes), its start and end
    as integer ms (9 bytes), a start the state lacks as nil; a long error copied as it came."""
    started = 1_714_566_601_000
    with_start = await running_as(rh, b"running|%d|0||tok|||%d|||q" % (attempts, started))
    without = await running_as(rh, b"running|%d|0||tok||||||q" % attempts)
    text = "x" * 300  # a str16 in the error value sent

    before = time.time()
    await retry(rh, with_start, error=text, error_type="Long")
    await retry(rh, without, error="e")
    after = time.time()

    raw = await rh.client.hget(rh.broker.keys.err, with_start)
    number = msgspec.msgpack.encode(attempts)
    assert raw.startswith(msgspec.msgpack.encode([text, "Long", None])[1:], 1)
    assert number + msgspec.msgpack.encode(started) in raw
    [attempt] = decode_error(raw)[3]
    assert (attempt.number, attempt.error, attempt.error_type) == (attempts, text, "Long")
    assert attempt.started_at == datetime.fromtimestamp(started / 1000, UTC)
    assert before - 1 <= attempt.ended_at.timestamp() <= after + 1
    [bare] = (await get(rh, without)).failures
    assert (bare.number, bare.started_at, bare.error) == (attempts, None, "e")


async def test_the_history_past_the_cap_is_one_array_of_the_newest(rh: RedisHarness) -> None:
    """Past ``MAX_FAILURES`` the oldest attempt is dropped at each failure; the array of 3 + 20
    items takes a 16-bit header."""
    attempts = [[n, 1000 * n, 1000 * n + 1, "retry", f"e{n}", None] for n in range(1, 21)]
    full = msgspec.msgpack.encode(["e20", None, None, *attempts])
    job_id = await running_as(rh, b"running|21|0||tok|||21000|||q", full)

    await retry(rh, job_id, error="e21")

    raw = await rh.client.hget(rh.broker.keys.err, job_id)
    assert raw[:3] == b"\xdc\x00\x17"  # 23 items
    failures = (await get(rh, job_id)).failures
    assert len(failures) == MAX_FAILURES
    assert [a.number for a in failures] == list(range(2, 22))
    assert failures[0].ended_at == datetime.fromtimestamp(2.001, UTC)


@pytest.mark.parametrize("damaged", [b"not msgpack", msgspec.msgpack.encode({"a": 1}), b"\x92"])
async def test_a_damaged_error_value_is_replaced_by_the_failure(
    rh: RedisHarness, damaged: bytes
) -> None:
    """A value that is no error array (not taskit's) does not fail the settle: the failure
    writes a clean value, with this attempt alone."""
    job_id = await running_as(rh, b"running|1|0||tok||||||q", damaged)

    await retry(rh, job_id, error="e1", error_type="E1")

    job = await get(rh, job_id)
    assert job.status is JobStatus.RETRYING
    assert (job.error, [a.error for a in job.failures]) == ("e1", ["e1"])
