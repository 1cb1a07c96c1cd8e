"""Poison records: a stored job with an unreadable field never stops the broker or a worker.

A Hypothesis fuzz corrupts one part of one job's stored record (each state field, the length
prefix, the spec as a whole and each field inside it, the error) while it is ready, due or
leased with an expired lease, then
drives every path that reads stored bytes: get, stats, dead_letters, reserve, reclaim,
requeue_dead. Each must raise nothing but ``CorruptJobError`` (get only), the healthy jobs of the
queue must all run, and the poison job must end a dead letter with a reason: not lost, not stuck
RUNNING. On Redis (real and fakeredis) and on the memory broker (whose stored form is the Job
object: a field given a value of the wrong type in place).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from taskit.broker.base import Broker
from taskit.broker.memory import MemoryBroker
from taskit.broker.memory._testing import damage
from taskit.broker.redis import RedisBroker
from taskit.broker.redis.keys import Keys
from taskit.broker.redis.records import join_record, parse_state, split_record
from taskit.clock import FakeClock
from taskit.errors import CorruptJobError, SerializationError
from taskit.job import Job, JobResult, JobSpec, JobStatus, OutcomeKind, decode_job, stored_form
from tests.broker._helpers import LONG, make_job, new_queue, outcome
from tests.broker._redis_kinds import open_redis_harness

#: The state fields a value can make unreadable, by place in the state string (the token and the
#: queue hold any text: nothing there is unreadable).
STATE_FIELDS = {"status": 0, "attempts": 1, "score": 2, "seq": 3, "cancel": 5, "sched": 6}
STATE_FIELDS |= {"started": 7, "completed": 8, "failed": 9}
PARTS = (*STATE_FIELDS, "prefix", "spec", "error")
STAGES = ("ready", "due", "expired")
#: Values a hand, a bad restore or another program might leave; plus anything at all.
SUSPECTS = [b"not-a-time", b"1.5", b"-1", b"", b"nan", b"inf", b"1e999", b"0x10", b" 1", b"+1"]
SUSPECTS += [b"99999999999999999999999", b"running", b"\xff\xfe", b"1|2", b"2"]
VALUES = st.one_of(st.sampled_from(SUSPECTS), st.binary(max_size=12))
#: A fast, fixed fuzz for CI: eight values per part, a few seconds per broker kind.
FUZZ = settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def corrupt_record(raw: bytes, part: str, value: bytes) -> bytes:
    """``raw`` (a live record) with ``part`` replaced by ``value``."""
    state, spec = split_record(raw)
    if part == "prefix":
        return value + b":" + state + spec
    if part == "spec":
        return join_record(state, value)
    fields = state.split(b"|", 10)
    fields[STATE_FIELDS[part]] = value
    return join_record(b"|".join(fields), spec)


def readable(raw: bytes, err: bytes | None) -> bool:
    """Whether a record reads back (then it is no poison: the fuzz skips it)."""
    try:
        state, spec = split_record(raw)
        parse_state(state)
        decode_job(spec)
        if err:
            msgspec.msgpack.decode(err, type=tuple[str | None, str | None, str | None])
    except Exception:  # anything unreadable counts
        return False
    return True


async def drain_and_check(broker: Broker, queue: str, poison: str, good: set[str]) -> None:
    """Every read path, then run the queue dry: the good jobs run, the poison is a dead letter
    with a reason, nothing is left running."""
    await read_paths(broker, queue, poison)
    ran: set[str] = set()
    for _ in range(10):
        leases = await broker.reserve([queue], count=10, lease=LONG, timeout=0)
        leases += await broker.reclaim([queue], lease=LONG)
        if not leases:
            break
        assert all(await broker.settle([outcome(h, OutcomeKind.COMPLETE) for h in leases]))
        ran |= {h.job.id for h in leases}
    assert good <= ran
    assert poison not in ran
    await read_paths(broker, queue, poison)
    dead = {job.id: job for job in await broker.dead_letters(queue)}
    assert poison in dead
    assert dead[poison].status is JobStatus.DEAD_LETTER
    assert dead[poison].error
    stats = (await broker.stats([queue]))[queue]
    assert (stats.running, stats.queued, stats.scheduled, stats.dead) == (0, 0, 0, 1)
    assert await broker.requeue_dead(queue, [poison]) in (0, 1)  # never raises


async def read_paths(broker: Broker, queue: str, poison: str) -> None:
    """The read-only paths: get raises nothing but CorruptJobError (naming the job), the
    others nothing at all."""
    failure: CorruptJobError | None = None
    try:
        await broker.get(poison)
    except CorruptJobError as exc:
        failure = exc
    assert failure is None or failure.job_id == poison
    await broker.stats([queue])
    await broker.stats()
    await broker.dead_letters(queue)


# -- Redis ---------------------------------------------------------------------------------


@pytest.fixture(params=["fast-real", "redispy-fakeredis"])
def redis_portal(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """A blocking portal and a Redis harness living in it, for the whole fuzz run."""
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(open_redis_harness(request.param, request)) as h,
    ):
        yield portal, h


async def poison_on_redis(h: Any, stage: str, part: str, value: bytes) -> None:
    broker: RedisBroker = h.broker
    k: Keys = broker.keys
    queue = new_queue()
    delays = [60.0] if stage == "due" else None
    [poison] = await broker.enqueue([make_job(queue, "poison")], delays=delays)
    if stage == "expired":
        await broker.reserve([queue], count=1, lease=LONG, timeout=0)
    good = [make_job(queue, n) for n in range(3)]
    await broker.enqueue(good)
    raw = await h.client.hget(k.jobs, poison.id)
    if part == "error":
        await h.client.hset(k.err, poison.id, value)
    else:
        await h.client.hset(k.jobs, poison.id, corrupt_record(raw, part, value))
    if stage == "due":
        await h.client.zadd(k.delayed(queue), {poison.id: 0})
    if stage == "expired":
        await h.client.zadd(k.leases(queue), {poison.id: 0})
    await drain_and_check(broker, queue, poison.id, {j.id for j in good})


@pytest.mark.parametrize("part", PARTS)
@given(stage=st.sampled_from(STAGES), value=VALUES)
@FUZZ
def test_a_poison_field_is_dead_lettered_and_the_queue_flows_on_redis(
    redis_portal: tuple[Any, Any], stage: str, part: str, value: bytes
) -> None:
    portal, h = redis_portal
    if part == "error":
        assume(value and not readable(join_record(b"pending|0|0||||||||q", _SPEC), value))
    else:
        assume(not readable(_fresh(part, value), None))
    portal.call(poison_on_redis, h, stage, part, value)


#: A readable status that has no business where the job was found (stage), while the job is in
#: no structure of that status: dropping the entry would lose the job unseen.
MISPLACED = [
    *(("ready", s) for s in ("running", "scheduled", "retrying", "dead_letter", "completed")),
    *(("due", s) for s in ("pending", "running", "dead_letter", "failed")),
    *(("expired", s) for s in ("pending", "scheduled", "retrying", "dead_letter", "cancelled")),
]


@pytest.mark.parametrize(("stage", "status"), MISPLACED)
def test_a_status_changed_by_hand_is_dead_lettered_not_dropped_on_redis(
    redis_portal: tuple[Any, Any], stage: str, status: str
) -> None:
    """The fuzz skips readable values; a valid status in the wrong place is one: reserve,
    promotion and reclaim dropped its only entry, and the job sat in the jobs hash unseen."""
    portal, h = redis_portal
    portal.call(poison_on_redis, h, stage, "status", status.encode())


async def stray_entry_on_redis(h: Any, stage: str) -> None:
    """A leftover entry (its job placed right, elsewhere) is dropped; the job is untouched."""
    broker: RedisBroker = h.broker
    k: Keys = broker.keys
    queue = new_queue()
    [job] = await broker.enqueue([make_job(queue, "stray")])
    [held] = await broker.reserve([queue], count=1, lease=LONG, timeout=0)  # RUNNING, leased
    if stage == "ready":
        await h.client.rpush(k.fifo(queue), job.id)
    else:
        await h.client.zadd(k.delayed(queue), {job.id: 0})
    assert await broker.reserve([queue], count=1, lease=LONG, timeout=0) == []
    assert await broker.reclaim([queue], lease=LONG) == []
    assert (await broker.stats([queue]))[queue].dead == 0
    assert await broker.settle([outcome(held, OutcomeKind.COMPLETE)]) == [True]
    got = await broker.get(job.id)
    assert got is not None
    assert (got.status, got.attempts) == (JobStatus.COMPLETED, 1)


@pytest.mark.parametrize("stage", ["ready", "due"])
def test_a_stray_entry_of_a_job_placed_right_is_dropped_on_redis(
    redis_portal: tuple[Any, Any], stage: str
) -> None:
    portal, h = redis_portal
    portal.call(stray_entry_on_redis, h, stage)


def full_job(queue: str, *args: Any) -> Job:
    """A job whose spec holds every field (the last one set, so none is left out)."""
    return msgspec.structs.replace(make_job(queue, *args), created_by="fuzz")


_SPEC = stored_form(full_job("q"))[1]
#: The parts of the spec: a msgpack array of the schema tag, then every JobSpec field in order.
SPEC_FIELDS = ("v", *JobSpec.__struct_fields__)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2),
)


def spoil_spec(spec: bytes, index: int, value: Any) -> bytes:
    fields = msgspec.msgpack.decode(spec)
    assert len(fields) == len(SPEC_FIELDS)
    fields[index] = value
    return msgspec.msgpack.encode(fields)


async def spec_poison_on_redis(h: Any, stage: str, index: int, value: Any) -> None:
    broker: RedisBroker = h.broker
    k: Keys = broker.keys
    queue = new_queue()
    delays = [60.0] if stage == "due" else None
    [poison] = await broker.enqueue([full_job(queue, "poison")], delays=delays)
    if stage == "expired":
        await broker.reserve([queue], count=1, lease=LONG, timeout=0)
    good = [make_job(queue, n) for n in range(3)]
    await broker.enqueue(good)
    state, spec = split_record(await h.client.hget(k.jobs, poison.id))
    await h.client.hset(k.jobs, poison.id, join_record(state, spoil_spec(spec, index, value)))
    if stage == "due":
        await h.client.zadd(k.delayed(queue), {poison.id: 0})
    if stage == "expired":
        await h.client.zadd(k.leases(queue), {poison.id: 0})
    await drain_and_check(broker, queue, poison.id, {j.id for j in good})


#: (``payload`` is raw msgpack to the broker: any value is one; arguments that do not fit their
#: task are the worker's to end, see test_execution.py::test_a_payload_that_does_not_fit_...)
_SPEC_PARTS = [i for i, name in enumerate(SPEC_FIELDS) if name != "payload"]


@pytest.mark.parametrize("index", _SPEC_PARTS, ids=[SPEC_FIELDS[i] for i in _SPEC_PARTS])
@given(stage=st.sampled_from(STAGES), value=ANY_VALUE)
@settings(FUZZ, max_examples=4)
def test_a_poison_spec_field_is_dead_lettered_and_the_queue_flows_on_redis(
    redis_portal: tuple[Any, Any], stage: str, index: int, value: Any
) -> None:
    portal, h = redis_portal
    spoilt = spoil_spec(_SPEC, index, value)
    try:
        decode_job(spoilt)
    except SerializationError:
        pass
    else:
        assume(False)  # still a valid job: no poison
    portal.call(spec_poison_on_redis, h, stage, index, value)


def _fresh(part: str, value: bytes) -> bytes:
    """A healthy record of a job with ``part`` corrupted to ``value`` (to rule out values that
    happen to be readable: no poison)."""
    state = b"running|1|0||t.1||||1|||q"
    return corrupt_record(join_record(state, _SPEC), part, value)


# -- memory --------------------------------------------------------------------------------

#: In-place corruptions of a stored Job (fields given values of the wrong type).
MEMORY_POISONS: dict[str, Any] = {
    "payload": msgspec.Raw(b"\xc1"),
    "attempts": 1.5,
    "scheduled_at": "not-a-time",
    "created_at": None,
    "metadata": {"x": object()},
    "result": JobResult(success=True, value=object()),
    "task": 7,
}


async def poison_in_memory(stage: str, field: str) -> None:
    clock = FakeClock()
    broker = MemoryBroker(clock=clock)
    queue = new_queue()
    [poison] = await broker.enqueue([make_job(queue, "poison")])
    if stage == "expired":
        await broker.reserve([queue], count=1, lease=1.0, timeout=0)
    good = [make_job(queue, n) for n in range(3)]
    await broker.enqueue(good)
    damage(broker, poison.id, field, MEMORY_POISONS[field])
    clock.advance(2.0)
    await drain_and_check(broker, queue, poison.id, {j.id for j in good})


@pytest.mark.parametrize("stage", ["ready", "expired"])
@pytest.mark.parametrize("field", sorted(MEMORY_POISONS))
def test_a_poison_field_is_dead_lettered_and_the_queue_flows_in_memory(
    stage: str, field: str
) -> None:
    anyio.run(poison_in_memory, stage, field)


def test_the_fuzz_corrupts_what_it_says() -> None:
    raw = join_record(b"pending|0|0||||||||q", b"spec")
    assert split_record(corrupt_record(raw, "attempts", b"1.5"))[0] == b"pending|1.5|0||||||||q"
    assert split_record(corrupt_record(raw, "failed", b"x"))[0] == b"pending|0|0|||||||x|q"
    assert corrupt_record(raw, "spec", b"zz").endswith(b"zz")


# -- enqueue over a poison record ------------------------------------------------------------


async def enqueue_over_poison(broker: Broker, spoil: Any) -> None:
    """Enqueueing a batch whose second job has the id of an unreadable record stores nothing
    and names the job; the record stays as it was."""
    queue = new_queue()
    [poison] = await broker.enqueue([make_job(queue, "poison")])
    await spoil(poison.id)
    fresh = make_job(queue, "fresh")
    again = make_job(queue, "again", job_id=poison.id)
    with pytest.raises(CorruptJobError) as caught:
        await broker.enqueue([fresh, again])
    assert caught.value.job_id == poison.id
    assert await broker.get(fresh.id) is None  # all or none
    assert (await broker.stats([queue]))[queue].queued in (0, 1)  # the poison may be buried


@pytest.mark.parametrize("kind", ["fast-real", "redispy-fakeredis"])
def test_an_enqueue_never_replaces_an_unreadable_record_on_redis(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async def go() -> None:
        async with open_redis_harness(kind, request) as h:

            async def spoil(job_id: str) -> None:
                raw = await h.client.hget(h.broker.keys.jobs, job_id)
                await h.client.hset(
                    h.broker.keys.jobs, job_id, corrupt_record(raw, "attempts", b"1.5")
                )

            await enqueue_over_poison(h.broker, spoil)

    anyio.run(go)


def test_an_enqueue_never_replaces_an_unreadable_record_in_memory() -> None:
    broker = MemoryBroker()

    async def spoil(job_id: str) -> None:
        damage(broker, job_id, "attempts", 1.5)

    anyio.run(enqueue_over_poison, broker, spoil)


# -- the scripts themselves, called directly --------------------------------------------------


@pytest.mark.parametrize(
    ("index", "value", "named"),
    [(0, b"bogus", "status 'bogus'"), (1, b"1.5", "attempts '1.5'"), (2, b"x", "score 'x'"),
     (3, b"1e3", "seq '1e3'"), (5, b"yes", "cancel 'yes'"), (7, b"-5", "started '-5'"),
     (6, b"not-a-time", "sched 'not-a-time'"), (6, b"nan", "sched 'nan'"),
     (9, b"\xff", "failed '?'")],
)  # fmt: skip
def test_each_script_path_dead_letters_a_bad_field_by_name(
    index: int, value: bytes, named: str, request: pytest.FixtureRequest
) -> None:
    anyio.run(_script_paths, index, value, named, request)


async def _script_paths(index: int, value: bytes, named: str, request: Any) -> None:
    from tests.broker.test_lua_scripts import enqueue, reserve, run

    async with open_redis_harness("fast-real", request) as rh:
        k = rh.broker.keys

        async def spoil(job_id: str) -> None:
            state, spec = split_record(await rh.client.hget(k.jobs, job_id))
            fields = state.split(b"|", 10)
            fields[index] = value
            await rh.client.hset(k.jobs, job_id, join_record(b"|".join(fields), spec))

        async def error_of(job_id: str) -> str:
            assert await rh.client.zscore(k.dead("q"), job_id) is not None
            text, kind, _ = msgspec.msgpack.decode(await rh.client.hget(k.err, job_id))
            assert kind == "CorruptJobError"
            return str(text)

        # reserve: a ready poison between two good jobs
        for job_id in ("a", "ready", "b"):
            await enqueue(rh, job_id)
        await spoil("ready")
        reply = await reserve(rh)
        assert reply[3::5] == [b"a", b"b"]
        assert await error_of("ready") == f"job record unreadable: {named}"
        # promotion (reserve and stats): a due poison
        await enqueue(rh, "due", delay_ms=60_000)
        await spoil("due")
        await rh.client.zadd(k.delayed("q"), {"due": 0})
        keys = [k.jobs, k.seq, k.err, k.limit_keys()[-1], k.wf_deferred, k.fifo("q"), k.ranked("q")]
        keys += [k.delayed("q"), k.leases("q")]
        fair = k.of("q", ("groups", "turns", "groupof"))
        assert await run(rh, "stats", [*keys, k.dead("q"), k.totals("q"), *fair], [100, "q"])
        assert await error_of("due") == f"job record unreadable: {named}"
        # reclaim: a poison whose lease expired
        await enqueue(rh, "leased")
        await reserve(rh, lease_ms=0)
        await spoil("leased")
        reclaim_keys = [k.jobs, k.err, k.seq, *k.limit_keys(), k.leases("q"), k.dead("q")]
        reclaim_keys += [k.fifo("q")]
        reclaim_keys += [k.ranked("q"), k.delayed("q"), *k.of("q", ("groups", "groupof"))]
        assert await run(rh, "reclaim", reclaim_keys, [5_000, 10, "new", "q"]) == [ANY_NOW]
        assert await error_of("leased") == f"job record unreadable: {named}"
        assert await rh.client.zcard(k.leases("q")) == 2  # a and b, still held


class _AnyNow(int):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and other > 0

    __hash__ = int.__hash__


ANY_NOW = _AnyNow()


@pytest.mark.parametrize("kind", ["fast-real", "redispy-fakeredis"])
def test_get_of_a_finished_record_that_is_unreadable_names_the_field(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async def go() -> None:
        async with open_redis_harness(kind, request) as h:
            done = h.broker.keys.done("j")
            state = b"completed|1|0|||||1|2||q"
            await h.client.hset(done, mapping={"spec": _SPEC, "state": state, "res": b"\xc1"})
            with pytest.raises(CorruptJobError) as caught:
                await h.broker.get("j")
            assert (caught.value.job_id, caught.value.field) == ("j", "result")
            await h.client.hset(done, mapping={"state": b"completed|x|0|||||1|2||q", "res": b""})
            with pytest.raises(CorruptJobError, match="attempts"):
                await h.broker.get("j")

    anyio.run(go)
