"""Each Lua script called directly, through the registry, with the keys and arguments its header
documents; plus checks on the script files themselves."""

from __future__ import annotations

import re
from importlib import resources

import msgspec
import pytest

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.records import join_record, parse_state, split_record
from taskit.broker.redis.scripts import Scripts
from taskit.job import JobStatus
from tests.broker._redis_kinds import RedisHarness

pytestmark = pytest.mark.anyio

SCRIPTS = Scripts()
SPEC = b"not-decoded-by-lua"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def run(rh: RedisHarness, name: str, keys: list[str], args: list[object]) -> object:
    return await SCRIPTS.call(rh.direct, name, keys, args)  # type: ignore[arg-type]


def fair(
    k: Keys, q: str = "q", kinds: tuple[str, ...] = ("groups", "turns", "groupof")
) -> list[str]:
    """A queue's fair-turn keys, which scripts take after the queue's others."""
    return k.of(q, kinds)


def enqueue_keys(k: Keys, job_id: str, queue: str = "q") -> list[str]:
    """KEYS of an enqueue call of one job to ``queue``: fixed keys, the queue's, the done key."""
    fixed = [k.jobs, k.err, k.seq, k.queues]
    mine = [k.fifo(queue), k.ranked(queue), k.delayed(queue), k.wake(queue), k.dead(queue)]
    mine += fair(k, queue)
    return [*fixed, *mine, k.done(job_id), k.progress, k.dedup, k.dedup_until, k.wf_of,
            k.wf_deferred]  # fmt: skip


async def enqueue(rh: RedisHarness, job_id: str, *, delay_ms: int = 0, priority: int = 0) -> list:
    k = rh.broker.keys
    args = [1, "q", job_id, SPEC, f"1 1 {-priority} {delay_ms} -1", ""]
    reply = await run(rh, "enqueue", enqueue_keys(k, job_id), args)
    assert isinstance(reply, list)
    return reply


async def reserve(rh: RedisHarness, count: int = 10, lease_ms: int = 30_000) -> list:
    k = rh.broker.keys
    keys = [k.jobs, k.err, k.seq, *k.limit_keys(), k.fifo("q"), k.ranked("q"), k.delayed("q")]
    keys += [k.leases("q"), k.dead("q"), k.wake("q"), *fair(k), k.paused]
    reply = await run(rh, "reserve", keys, [count, lease_ms, "stem", 100, "q"])
    assert isinstance(reply, list)
    return reply


async def state_in(rh: RedisHarness, job_id: str) -> bytes:
    """The state string of a live job's record."""
    raw = await rh.client.hget(rh.broker.keys.jobs, job_id)
    assert raw is not None
    return split_record(raw)[0]


def state_of(raw: bytes) -> tuple[JobStatus, int, str]:
    state = parse_state(raw)
    return state.status, state.attempts, state.token


def test_every_command_script_documents_its_keys_args_and_reply() -> None:
    folder = resources.files("taskit.broker.redis").joinpath("lua")
    names = sorted(e.name for e in folder.iterdir() if not e.name.startswith("_"))
    assert len(names) == len(SCRIPTS.names) == 37
    for name in names:
        text = folder.joinpath(name).read_text("utf-8")
        header = text.split("]]", 1)[0]
        assert text.startswith("--[["), name
        for part in ("KEYS[", "ARGV", "Returns"):  # KEYS[1], or KEYS[base+1] per queue
            assert part in header, name
        assert "local rcall = redis.call" in text, name
        # Server time only; key names only from KEYS (no key text assembled in Lua, except by
        # the workflow include, _workflow.lua, and the counts include, _counts.lua: see keys.py,
        # test_lua_workflows.py and test_lua_browse.py).
        assert "os.time" not in text, name
        assert "{" + "taskit" not in text, name
        assert not re.search(r"rcall\('[A-Z]+', [a-z_]+ \.\.", text), name


async def test_enqueue_stores_a_job_and_keeps_an_unfinished_one(rh: RedisHarness) -> None:
    k = rh.broker.keys
    first = await enqueue(rh, "j1", priority=3)
    again = await enqueue(rh, "j1")

    assert first[0] == b"ok"
    assert first[1] == 0
    assert state_of(first[3])[0] is JobStatus.PENDING
    assert again[1] == 1
    assert again[2] == SPEC
    assert await rh.client.zrange(k.ranked("q"), 0, -1, withscores=True) == [
        (b"0000000000000001:j1", -3.0)
    ]
    assert not await rh.client.exists(k.fifo("q"))
    assert await rh.client.llen(k.wake("q")) == 1
    assert await rh.client.smembers(k.queues) == {b"q"}


async def test_enqueue_asks_for_the_dead_set_of_another_queue(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await rh.client.hset(k.jobs, "j1", join_record(b"dead_letter|1|0|||||1|1|1|other", SPEC))

    reply = await run(rh, "enqueue", enqueue_keys(k, "j1"), [1, "q", "j1", SPEC, "1 1 0 0 -1", ""])

    assert reply == [b"moved", 1, b"other"]
    assert not await rh.client.exists(k.fifo("q"))


def plain_keys(k: Keys, job_ids: list[str], queues: tuple[str, ...] = ("q",)) -> list[str]:
    """KEYS of an enqueue-plain call: fixed keys, each queue's, each job's done key."""
    keys = [k.jobs, k.err, k.progress, k.queues]
    for queue in queues:
        keys += k.of(queue, ("fifo", "wake", "dead", "groupof"))
    return keys + [k.done(job_id) for job_id in job_ids]


async def snapshot(rh: RedisHarness) -> dict[bytes, object]:
    """Every key of the harness's prefix and what it holds (a counts hash by its content only:
    its name holds the minute of the server's clock, which may turn between two runs)."""
    found: dict[bytes, object] = {}
    async for key in rh.client.scan_iter(match=rh.broker.keys.pattern()):
        kind = (await rh.client.type(key)).decode()
        read = {"hash": rh.client.hgetall, "list": lambda k: rh.client.lrange(k, 0, -1),
                "set": rh.client.smembers, "string": rh.client.get,
                "zset": lambda k: rh.client.zrange(k, 0, -1, withscores=True)}  # fmt: skip
        name = key.partition(b":counts:")[0] + b":counts:<minute>" if b":counts:" in key else key
        found[name] = (kind, await read[kind](key))
    return found


async def wipe(rh: RedisHarness) -> None:
    async for key in rh.client.scan_iter(match=rh.broker.keys.pattern()):
        await rh.client.delete(key)


#: Plain batches, each (records stored before it: id -> (state, queue); ids sent; queue of the
#: dead letter each id is expected in).
PLAIN_CASES = {
    "new": ({}, ["j1"], ["q"]),
    "one id twice": ({}, ["j1", "j1"], ["q", "q"]),
    "unfinished kept": ({"j1": "running|1|0||tok.1|||1|||q"}, ["j1", "j2"], ["q", "q"]),
    "dead letter replaced": ({"j1": "dead_letter|1|0|||||1|1|1|q"}, ["j1"], ["q"]),
    "dead letter twice": ({"j1": "dead_letter|1|0|||||1|1|1|q"}, ["j1", "j1"], ["q", "q"]),
    "dead letter elsewhere": ({"j1": "dead_letter|1|0|||||1|1|1|other"}, ["j1"], ["q"]),
    "dead letter elsewhere, named": (
        {"j1": "dead_letter|1|0|||||1|1|1|other"},
        ["j2", "j1"],
        ["q", "other"],
    ),
    "unreadable": ({"j1": "nonsense"}, ["j1"], ["q"]),
}


@pytest.mark.parametrize("case", PLAIN_CASES)
async def test_enqueue_plain_does_what_enqueue_does_for_plain_jobs(
    rh: RedisHarness, case: str
) -> None:
    before, ids, dead_in = PLAIN_CASES[case]
    k = rh.broker.keys
    queues = list(dict.fromkeys(["q", *dead_in]))  # every job goes to q
    results = []
    for script in ("enqueue", "enqueue-plain"):
        await wipe(rh)
        for job_id, state in before.items():
            await rh.client.hset(k.jobs, job_id, join_record(state.encode(), SPEC))
            await rh.client.hset(k.err, job_id, b"e")
            await rh.client.zadd(k.dead(state.rpartition("|")[2]), {job_id: 1})
        await rh.client.hset(k.done("j1"), "spec", b"old")  # a finished j1 of long ago
        number = {q: i for i, q in enumerate(queues, 1)}
        if script == "enqueue":
            keys = [k.jobs, k.err, k.seq, k.queues]
            for queue in queues:
                keys += k.of(queue, ("fifo", "ranked", "delayed", "wake", "dead"))
                keys += fair(k, queue)
            keys += [k.done(i) for i in ids]
            keys += [k.progress, k.dedup, k.dedup_until, k.wf_of, k.wf_deferred]
            args: list[object] = [len(queues), *queues]
            for job_id, dead in zip(ids, dead_in, strict=True):
                args += [job_id, SPEC, f"1 {number[dead]} 0 0 -1", ""]
        else:
            keys = plain_keys(k, ids, tuple(queues))
            args = [len(queues), *queues]
            for job_id, dead in zip(ids, dead_in, strict=True):
                args += [job_id, SPEC] + ([f"1 {number[dead]}"] if len(queues) > 1 else [])
        reply = await run(rh, script, keys, args)
        results.append((reply, await snapshot(rh)))

    assert results[0] == results[1]
    reply, keys = results[1]
    assert isinstance(reply, list)
    if case == "new":  # and so for the others: the same as enqueue
        assert reply == [b"ok", 0, b"", b"pending|0|0||||||||q", b"", b""]
        assert keys[k.fifo("q").encode()] == ("list", [b"j1"])
        assert keys[k.wake("q").encode()] == ("list", [b"1"])
        assert k.done("j1").encode() not in keys


async def test_enqueue_with_a_delay_schedules(rh: RedisHarness) -> None:
    reply = await enqueue(rh, "j1", delay_ms=60_000)

    assert state_of(reply[3])[0] is JobStatus.SCHEDULED
    assert await rh.client.zcard(rh.broker.keys.delayed("q")) == 1


async def test_reserve_leases_and_reports_the_next_due_time(rh: RedisHarness) -> None:
    await enqueue(rh, "soon", delay_ms=5_000)
    empty = await reserve(rh)
    assert empty[1] > 4_000
    assert len(empty) == 2

    await enqueue(rh, "now")
    reply = await reserve(rh)

    now, wait, q, job_id, spec, state, err = reply
    assert (wait, q, job_id, spec, err) == (-1, 1, b"now", SPEC, b"")
    assert state_of(state) == (JobStatus.RUNNING, 1, "stem.1")
    assert await rh.client.zscore(rh.broker.keys.leases("q"), "now") == now + 30_000


async def test_extend_answers_per_token(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "j1")
    await reserve(rh)
    await rh.client.hset(k.jobs, "j2", join_record(b"running|1|0||tok|1|||||q", SPEC))

    reply = await run(
        rh, "extend", [k.jobs, k.leases("q"), k.leases("q"), k.leases("q")],
        [1_000, "j1", "stem.1", "j1", "stale", "j2", "tok"],
    )  # fmt: skip

    assert reply == [b"held", b"lost", b"cancelled"]


def settle_keys(k: Keys, *job_ids: str) -> list[str]:
    """KEYS of a settle call for jobs of queue "q": the queue's keys once, then a done key each."""
    q = "q"
    return [k.jobs, k.err, k.seq, *k.limit_keys(), k.fifo(q), k.ranked(q), k.delayed(q),
            k.leases(q), k.dead(q), k.totals(q), k.wake(q), *fair(k, q),
            *k.of(q, ("completed", "failed", "cancelled")),
            *(k.done(job_id) for job_id in job_ids),
            k.progress, k.wf_of, k.wf_deferred]  # fmt: skip


async def test_settle_applies_current_tokens_only(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "j1")
    await reserve(rh)
    result = msgspec.msgpack.encode({"success": True, "value": 7})
    keys = settle_keys(k, "j1", "j1")
    args = [60_000, 1, "j1", "stale fail 1 0", "", "", "j1", "stem.1 complete 1 0", "", result]

    assert await run(rh, "settle", keys, args) == [0, 1]
    assert await rh.client.hget(k.done("j1"), "res") == result
    assert 0 < await rh.client.pttl(k.done("j1")) <= 60_000
    assert await rh.client.hget(k.totals("q"), "completed") == b"1"
    assert not await rh.client.hexists(k.jobs, "j1")
    assert await rh.client.zcard(k.leases("q")) == 0


async def test_reclaim_takes_expired_leases_under_a_new_token(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "j1")
    await reserve(rh, lease_ms=0)

    keys = [k.jobs, k.err, k.seq, *k.limit_keys(), k.leases("q"), k.dead("q")]
    keys += [k.fifo("q"), k.ranked("q"), k.delayed("q"), *fair(k, "q", ("groups", "groupof"))]
    reply = await run(rh, "reclaim", keys, [5_000, 10, "new", "q"])

    assert isinstance(reply, list)
    now, q, job_id, spec, state, _err = reply
    assert (q, job_id, spec) == (1, b"j1", SPEC)
    assert state_of(state) == (JobStatus.RUNNING, 1, "new.1")
    assert await rh.client.zscore(k.leases("q"), "j1") == now + 5_000


async def test_settle_appends_each_failed_attempt_to_the_error_value(rh: RedisHarness) -> None:
    """A retry, then a dead letter: the error value is the last error sent, then one array per
    failed attempt (number, start and end in ms, kind, error, type); a complete adds none."""
    k = rh.broker.keys
    await enqueue(rh, "j1")
    await enqueue(rh, "j2")
    error = msgspec.msgpack.encode(["boom", "E", "tb"])
    for kind, triple in (("retry", error), ("dead_letter", b"")):
        rows = await reserve(rh, count=1)
        state = parse_state(rows[5])
        args = [1000, 1, "j1", f"{state.token} {kind} 1 0", triple, ""]
        assert await run(rh, "settle", settle_keys(k, "j1"), args) == [1]
        assert state.started is not None
        value = msgspec.msgpack.decode(await rh.client.hget(k.err, "j1"))
        number, started, _, written, *texts = value[-1]
        assert (number, started, written) == (state.attempts, round(state.started * 1000), kind)
        assert texts == (["boom", "E"] if triple else [None, None])
    rows = await reserve(rh, count=1)
    args = [1000, 1, "j2", f"{parse_state(rows[5]).token} complete 1 0", "", ""]
    assert await run(rh, "settle", settle_keys(k, "j2"), args) == [1]

    [first, second] = value[3:]
    assert value[:3] == ["boom", "E", "tb"]  # no error sent with the dead letter: kept
    assert (first[0], second[0]) == (1, 2)
    assert first[1] <= first[2] <= second[1] <= second[2]
    assert await rh.client.hget(k.done("j2"), "err") == b""


def cancel_keys(k: Keys, job_id: str, q: str = "q") -> list[str]:
    return [k.jobs, k.err, k.done(job_id), k.fifo(q), k.ranked(q), k.delayed(q), k.leases(q),
            k.totals(q), k.progress, *fair(k, q), *k.limit_keys(), k.wf_of, k.wf_deferred,
            k.seq, *k.of(q, ("completed", "failed", "cancelled"))]  # fmt: skip


async def test_cancel_ends_a_waiting_job_and_names_a_wrong_queue(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "j1")

    assert (
        await run(rh, "cancel", cancel_keys(k, "j1", "other"), ["j1", "other", 1000, 1000]) == b"q"
    )
    assert await run(rh, "cancel", cancel_keys(k, "j1"), ["j1", "q", 1000, 1000]) == 1
    assert await run(rh, "cancel", cancel_keys(k, "j1"), ["j1", "q", 1000, 1000]) == 0
    assert state_of(await rh.client.hget(k.done("j1"), "state"))[0] is JobStatus.CANCELLED
    assert await rh.client.llen(k.fifo("q")) == 0


async def dead_letter(rh: RedisHarness, job_id: str) -> None:
    k = rh.broker.keys
    await enqueue(rh, job_id)
    rows = await reserve(rh)
    token = parse_state(rows[5]).token
    args = [1000, 1, job_id, f"{token} dead_letter 1 0", "", ""]
    assert await run(rh, "settle", settle_keys(k, job_id), args) == [1]


async def test_dead_letters_requeue_dead_and_purge_dead(rh: RedisHarness) -> None:
    k = rh.broker.keys
    for job_id in ("d1", "d2", "d3"):
        await dead_letter(rh, job_id)

    page = await run(rh, "dead-letters", [k.dead("q"), k.jobs, k.err], [1, 1])
    assert isinstance(page, list)
    assert page[0] == b"d2"
    assert page[1] == SPEC
    requeue_keys = [k.jobs, k.seq, k.fifo("q"), k.ranked("q"), k.dead("q"), k.wake("q"), *fair(k)]
    purge_dead_keys = [k.jobs, k.err, k.dead("q"), k.progress, *fair(k, "q", ("groupof",))]
    assert await run(rh, "requeue-dead", requeue_keys, [100, "d2", "nope"]) == 1
    assert state_of(await state_in(rh, "d2"))[:2] == (JobStatus.PENDING, 0)
    assert await rh.client.lrange(k.fifo("q"), 0, -1) == [b"d2"]
    assert await run(rh, "purge-dead", purge_dead_keys, [1]) == 1
    assert await run(rh, "purge-dead", purge_dead_keys, [100]) == 1
    assert await run(rh, "requeue-dead", requeue_keys, [100]) == 0


async def test_purge_deletes_waiting_jobs_in_batches(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "p1")
    await enqueue(rh, "p2", delay_ms=60_000)
    keys = [k.jobs, k.err, k.fifo("q"), k.ranked("q"), k.delayed("q"), k.progress, *fair(k)]
    keys += [*k.limit_keys(), k.wf_of, k.wf_deferred, k.seq]

    assert await run(rh, "purge", keys, [1, "q", 1000]) == 1
    assert await run(rh, "purge", keys, [1, "q", 1000]) == 1
    assert await run(rh, "purge", keys, [1, "q", 1000]) == 0
    assert await rh.client.hlen(k.jobs) == 0


async def test_stats_counts_and_promotes(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "a")
    await enqueue(rh, "b", delay_ms=60_000)
    await enqueue(rh, "c")
    await reserve(rh, count=1)
    keys = [k.jobs, k.seq, k.err, k.limit_keys()[-1], k.wf_deferred, k.fifo("q"), k.ranked("q")]
    keys += [k.delayed("q"), k.leases("q")]
    keys += [k.dead("q"), k.totals("q"), *fair(k)]

    assert await run(rh, "stats", keys, [100, "q"]) == [1, 1, 1, 0, 0, 0, 0]


async def test_get_reads_live_and_finished_records(rh: RedisHarness) -> None:
    k = rh.broker.keys
    await enqueue(rh, "j1")
    live = await run(rh, "get", [k.jobs, k.err, k.done("j1"), k.progress], ["j1"])
    await rh.client.hset(k.done("j2"), mapping={"spec": SPEC, "state": b"completed|1|0|||||1|2||q"})
    done = await run(rh, "get", [k.jobs, k.err, k.done("j2"), k.progress], ["j2"])
    missing = await run(rh, "get", [k.jobs, k.err, k.done("j3"), k.progress], ["j3"])

    assert isinstance(live, list)
    assert live[0] == SPEC
    assert live[3] == b""
    assert isinstance(done, list)
    assert state_of(done[1])[0] is JobStatus.COMPLETED
    assert missing is None


async def test_a_fixed_key_script_refuses_the_wrong_key_count(rh: RedisHarness) -> None:
    with pytest.raises(ValueError, match="takes 4 keys"):
        await run(rh, "get", ["only-one"], ["x"])


async def test_reserve_takes_higher_priorities_then_fifo_then_lower(rh: RedisHarness) -> None:
    for job_id, priority in [("low", -1), ("a", 0), ("high", 5), ("b", 0), ("top", 9)]:
        await enqueue(rh, job_id, priority=priority)

    reply = await reserve(rh, count=10)

    assert reply[3::5] == [b"top", b"high", b"a", b"b", b"low"]


async def test_a_release_puts_the_job_at_the_front_of_its_priority(rh: RedisHarness) -> None:
    k = rh.broker.keys
    for job_id, priority in [("a", 0), ("b", 0), ("r1", 2), ("r2", 2)]:
        await enqueue(rh, job_id, priority=priority)
    rows = await reserve(rh, count=3)  # r1, r2, a
    await enqueue(rh, "c", priority=2)  # behind r1 and r2 had they stayed
    tokens = {rows[i + 1]: parse_state(rows[i + 3]).token for i in range(2, len(rows), 5)}
    args: list[object] = [1000, 1]
    for job_id in (b"a", b"r2", b"r1"):
        args += [job_id.decode(), f"{tokens[job_id]} release 1 0", "", ""]  # any order
    assert await run(rh, "settle", settle_keys(k, "a", "r2", "r1"), args) == [1, 1, 1]

    again = await reserve(rh, count=10)

    # Released jobs go back to the front of their priority, in the order they were reserved.
    assert again[3::5] == [b"r1", b"r2", b"c", b"a", b"b"]
    assert [state_of(again[i])[1] for i in range(5, len(again), 5)] == [1, 1, 1, 1, 1]
