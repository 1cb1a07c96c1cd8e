"""Workflows inside the Redis broker's scripts (``lua/_workflow.lua``): the keys they keep, a
node's end applied once, cascades (deep, and wide: a 1,000-member chord in one call), the
release across queues, the errors of enqueue, and the keys the scripts build themselves (all in
the broker's one slot). The conformance suite checks the same contract on every broker."""

from __future__ import annotations

import re
from importlib import resources

import msgspec
import pytest

from taskit.broker.redis.workflows import end_result, pack_ids, unpack_ids
from taskit.dependencies import After, IfFailed
from taskit.job import Job, JobResult, JobStatus, Lease, Outcome, OutcomeKind
from taskit.workflow import WorkflowStatus
from tests.broker._helpers import LONG, make_job
from tests.broker._redis_kinds import REAL, RedisHarness
from tests.broker.test_lua_scripts import anyio_backend

__all__ = ["anyio_backend"]  # the fixture, re-used: these tests run on asyncio only

pytestmark = pytest.mark.anyio

WF = "wf-1"


def node(
    queue: str, job_id: str, *parents: str, workflow: str = WF, keep_going: bool = False
) -> Job:
    after = None
    if parents:
        policy = IfFailed.CONTINUE if keep_going else IfFailed.FAIL
        after = After(tuple(parents), if_failed=policy)
    return msgspec.structs.replace(make_job(queue, job_id=job_id), workflow=workflow, after=after)


def done(lease: Lease, value: object = None) -> Outcome:
    return Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.COMPLETE,
                   result=JobResult(success=True, value=value))  # fmt: skip


def failed(lease: Lease, error: str = "boom") -> Outcome:
    result = JobResult(success=False, error=error, error_type="ValueError")
    return Outcome(job_id=lease.job.id, token=lease.token, kind=OutcomeKind.FAIL, error=error,
                   error_type="ValueError", result=result)  # fmt: skip


async def take(rh: RedisHarness, queue: str, count: int = 1) -> list[Lease]:
    return await rh.broker.reserve([queue], count=count, lease=LONG, timeout=0)


async def status(rh: RedisHarness, job_id: str) -> JobStatus | None:
    job = await rh.broker.get(job_id)
    return None if job is None else job.status


def test_id_lists_survive_any_text() -> None:
    ids = ["", "a:b", "3:x", "ünï|cödé", "\0", "12:"]
    assert unpack_ids(pack_ids(ids)) == ids


async def test_a_release_crosses_queues_and_keeps_the_workflow_keys(rh: RedisHarness) -> None:
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([node("qa", "a"), node("qb", "b", "a"), node("qa", "c", "b")])
    assert await rh.client.hget(k.wf_of, "b") == WF.encode()
    assert (await b.stats(["qa", "qb"]))["qb"].deferred == 1
    assert await rh.client.llen(k.fifo("qb")) == 0  # DEFERRED: in no queue structure

    [lease] = await take(rh, "qa")
    assert await b.settle([done(lease, 3)]) == [True]

    assert await status(rh, "b") is JobStatus.PENDING
    assert await rh.client.lrange(k.fifo("qb"), 0, -1) == [b"b"]
    assert await rh.client.llen(k.wake("qb")) >= 1  # its queue's reserves are woken
    assert await rh.client.hexists(k.wf_of, "a") == 0  # ended: no longer a live node
    stats = await b.stats(["qa", "qb"])
    assert (stats["qa"].deferred, stats["qb"].deferred, stats["qb"].queued) == (1, 0, 1)
    state = await b.workflow(WF)
    assert state is not None
    assert [(n.id, n.status) for n in state.nodes] == [
        ("a", JobStatus.COMPLETED), ("b", JobStatus.PENDING), ("c", JobStatus.DEFERRED)
    ]  # fmt: skip
    assert await b.workflow_results(WF, ["a", "b"]) == [JobResult(success=True, value=3), None]


async def test_a_nodes_end_counts_once(rh: RedisHarness) -> None:
    """A retried settle (same token and kind) and a dead letter requeued and completed later
    change nothing in the workflow."""
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([node("q", "a"), node("q", "b", "a"), node("q", "c", "a", keep_going=True)])
    [lease] = await take(rh, "q")
    dead = Outcome(job_id="a", token=lease.token, kind=OutcomeKind.DEAD_LETTER, error="gone")
    assert await b.settle([dead]) == [True]
    assert await b.settle([dead]) == [True]  # the retry of a lost reply: applied once
    before = await rh.client.hgetall(k.workflow(WF))
    assert await status(rh, "b") is JobStatus.FAILED
    assert await status(rh, "c") is JobStatus.PENDING  # continue: released

    assert await b.requeue_dead("q", ["a"]) == 1
    leases = {held.job.id: held for held in await take(rh, "q", count=5)}
    assert await b.settle([done(leases["a"])]) == [True]

    after = await rh.client.hgetall(k.workflow(WF))
    assert after[b"e:a"] == before[b"e:a"]
    assert after[b"left"] == before[b"left"] == b"1"  # c is still running
    state = await b.workflow(WF)
    assert state is not None
    assert state.node("a") is not None
    assert state.node("a").status is JobStatus.DEAD_LETTER  # type: ignore[union-attr]


async def test_a_cascade_goes_down_a_long_chain_in_one_call(rh: RedisHarness) -> None:
    b, k = rh.broker, rh.broker.keys
    jobs = [node("q", "n0")] + [node("q", f"n{i}", f"n{i - 1}") for i in range(1, 60)]
    await b.enqueue(jobs)
    [lease] = await take(rh, "q")

    assert await b.settle([failed(lease)]) == [True]

    assert await rh.client.hlen(k.jobs) == 0
    n1, n59 = await b.get("n1"), await b.get("n59")
    assert n1 is not None
    assert n59 is not None
    assert (n1.error, n1.error_type) == ("waited for job n0, which ended failed: boom",
                                         "DependencyFailed")  # fmt: skip
    assert n59.status is JobStatus.FAILED
    assert n59.error is not None
    assert n59.error == n1.error  # a cascade names the failure that started it (no growth)
    assert (await b.stats(["q"]))["q"].failed == 60
    state = await b.workflow(WF)
    assert state is not None
    assert state.status is WorkflowStatus.FAILED
    assert 0 < await rh.client.pttl(k.workflow(WF)) <= 60_000  # expires: its last node ended
    await b.enqueue([node("q", "later")])  # a workflow gains nodes after it ended
    assert await rh.client.pttl(k.workflow(WF)) == -1  # kept again


async def test_a_chord_of_1000_is_released_once_and_cascades_in_one_call(
    rh: RedisHarness,
) -> None:
    """1,000 on a real server; 100 on fakeredis, whose Lua is slow in Python."""
    b, k = rh.broker, rh.broker.keys
    n = 1000 if rh.kind == REAL else 100
    members = [node("q", f"m{i}") for i in range(n)]
    callback = node("cb", "cb", *(m.id for m in members))
    await b.enqueue([*members, callback])
    leases = await take(rh, "q", count=n)
    assert len(leases) == n

    first = [done(held, i) for i, held in enumerate(leases[: n - 2])]
    assert await b.settle(first) == [True] * (n - 2)
    assert await status(rh, "cb") is JobStatus.DEFERRED
    last = [done(leases[-2]), done(leases[-1]), done(leases[-1])]  # the last two, one twice
    assert await b.settle(last) == [True, True, True]

    assert await rh.client.lrange(k.fifo("cb"), 0, -1) == [b"cb"]  # released exactly once
    got = await b.workflow_results(WF, [m.id for m in members])
    assert [r.value for r in got if r is not None][:3] == [0, 1, 2]

    # The other way: a root whose failure ends every waiting member and their callback.
    wide = [node("q", "root", workflow="w2")]
    wide += [node("q", f"w{i}", "root", workflow="w2") for i in range(n)]
    wide.append(node("cb", "wcb", *(f"w{i}" for i in range(n)), workflow="w2"))
    await b.enqueue(wide)
    [root] = await take(rh, "q")
    assert await b.settle([failed(root)]) == [True]
    wcb = await b.get("wcb")
    assert wcb is not None
    assert wcb.status is JobStatus.FAILED
    assert wcb.error == "waited for job root, which ended failed: boom"
    assert await rh.client.hlen(k.wf_deferred) == 0


async def test_enqueue_refuses_bad_parents_and_stores_nothing(rh: RedisHarness) -> None:
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([node("q", "other", workflow="w-other")])
    before = await rh.client.hlen(k.jobs)
    cases = [
        ([node("q", "x", "nope")], "'nope', which is unknown"),
        ([node("q", "x", "other")], "'other', which belongs to another workflow"),
        ([node("q", "x", "y"), node("q", "y")], "'y', which comes later in the batch"),
        ([node("q", "x", "x")], "cannot wait for itself"),
        ([msgspec.structs.replace(node("q", "x", "other"), workflow=None)], "needs a workflow"),
    ]
    for batch, words in cases:
        with pytest.raises(ValueError, match=re.escape(words)):
            await b.enqueue([node("q", "fine"), *batch])
    assert await rh.client.hlen(k.jobs) == before
    assert await rh.client.exists(k.workflow(WF)) == 0


async def test_enqueue_after_ended_parents_and_a_plain_job_adopted(rh: RedisHarness) -> None:
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([make_job("q", job_id="plain"), node("q", "bad")])
    leases = {held.job.id: held for held in await take(rh, "q", count=2)}
    await b.settle([done(leases["plain"], 7), failed(leases["bad"])])

    got = await b.enqueue([node("q", "ok", "plain"), node("q", "doomed", "bad", "ok"),
                           node("q", "next", "doomed")])  # fmt: skip

    assert [j.status for j in got] == [JobStatus.PENDING, JobStatus.FAILED, JobStatus.FAILED]
    assert got[1].error == "waited for job bad, which ended failed: boom"
    assert got[1].error_type == "DependencyFailed"
    state = await b.workflow(WF)
    assert state is not None
    assert [n.id for n in state.nodes] == ["bad", "plain", "ok", "doomed", "next"]
    plain = state.node("plain")
    assert plain is not None
    assert plain.result == JobResult(success=True, value=7)
    assert await rh.client.pttl(k.workflow(WF)) == -1  # "ok" has not ended


async def test_cancel_and_purge_end_nodes_for_their_workflow(rh: RedisHarness) -> None:
    b = rh.broker
    await b.enqueue([node("q", "a"), node("q", "b", "a"), node("q", "c", "b")])
    assert await b.cancel("b") is True  # DEFERRED
    c = await b.get("c")
    assert c is not None
    assert c.status is JobStatus.CANCELLED
    assert (c.error, c.error_type) == ("waited for job b, which ended cancelled: job was "
                                       "cancelled", "DependencyCancelled")  # fmt: skip
    assert (await b.stats(["q"]))["q"].deferred == 0

    await b.enqueue([node("p", "d", workflow="w2"), node("p", "e", "d", workflow="w2")])
    assert await b.purge("p") == 1
    assert await status(rh, "e") is JobStatus.CANCELLED
    state = await b.workflow("w2")
    assert state is not None
    assert [n.status for n in state.nodes] == [JobStatus.CANCELLED, JobStatus.CANCELLED]


async def test_cancel_workflow_cancels_as_cancel_does(rh: RedisHarness) -> None:
    b = rh.broker
    await b.enqueue([node("q", "a"), node("q", "b"), node("q", "c", "a", "b")])
    [running] = await take(rh, "q")

    assert await b.cancel_workflow(WF) == 3
    b_job, c_job = await b.get("b"), await b.get("c")
    assert b_job is not None
    assert c_job is not None
    assert (c_job.status, c_job.error_type) == (JobStatus.CANCELLED, None)
    assert b_job.status is JobStatus.CANCELLED
    assert await b.cancel_workflow(WF) == 1  # the running one, asked again
    canceled = Outcome(job_id="a", token=running.token, kind=OutcomeKind.CANCEL)
    assert await b.settle([canceled]) == [True]
    state = await b.workflow(WF)
    assert state is not None
    assert state.status is WorkflowStatus.CANCELLED
    assert await b.cancel_workflow(WF) == 0


async def test_scripts_build_keys_only_in_the_workflow_include(rh: RedisHarness) -> None:
    """Every key a workflow run leaves is under the broker's hash tag (one Cluster slot), and
    only ``_workflow.lua`` assembles key names."""
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([node("qa", "a"), node("qb", "b", "a"), node("qc", "c", "a")])
    [lease] = await take(rh, "qa")
    await b.settle([failed(lease)])
    keys = [key.decode() async for key in rh.client.scan_iter(match=k.pattern())]
    assert keys
    assert all(key.startswith(k.tag + ":") for key in keys)
    assert k.done("b") in keys
    assert k.totals("qc") in keys

    folder = resources.files("taskit.broker.redis").joinpath("lua")
    for entry in folder.iterdir():
        text = entry.read_text("utf-8")
        built = re.findall(r"rcall\('[A-Z]+', [A-Za-z_.]+ \.\.", text)
        assert not built or entry.name == "_workflow.lua", entry.name
    text = folder.joinpath("_workflow.lua").read_text("utf-8")
    for expr in re.findall(r"(\w+(?:\.\w+)?) \.\. '(:[a-z]+:)", text):
        assert expr[0] in ("tag", "W.tag"), expr  # every name starts from the broker's tag


def test_an_end_record_reads_as_result_of_gives_it() -> None:
    err = msgspec.msgpack.encode(("oops", "KeyError", "tb"))
    assert end_result(b"dead_letter|%d|%s" % (len(err), err)) == (
        JobStatus.DEAD_LETTER,
        JobResult(success=False, error="oops", error_type="KeyError", traceback="tb"),
    )
    assert end_result(b"cancelled|0|")[1].error_type == "Cancelled"


async def test_a_node_whose_record_is_buried_ends_for_its_workflow(rh: RedisHarness) -> None:
    """A node dead-lettered by a script because its record is unreadable is an end too."""
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([node("q", "a"), node("q", "b", "a")])
    await rh.client.hset(k.jobs, "a", b"5:bogus")  # not a state string this layout writes

    assert await take(rh, "q") == []  # a's entry was buried, b is not released

    b_job = await b.get("b")
    assert b_job is not None
    assert b_job.status is JobStatus.FAILED
    assert b_job.error is not None
    assert b_job.error.startswith("waited for job a, which ended dead_letter: job record unread")
    assert (await b.stats(["q"]))["q"].dead == 1


async def test_a_finished_node_enqueued_again_starts_afresh_in_its_place(rh: RedisHarness) -> None:
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([node("q", "a"), node("q", "b", "a")])
    [lease] = await take(rh, "q")
    await b.settle([failed(lease)])  # a fails, b with it

    await b.enqueue([node("q", "a"), node("q", "c", "a")])

    state = await b.workflow(WF)
    assert state is not None
    assert [(n.id, n.status) for n in state.nodes] == [
        ("a", JobStatus.PENDING), ("b", JobStatus.FAILED), ("c", JobStatus.DEFERRED)
    ]  # fmt: skip
    assert await rh.client.hget(k.workflow(WF), "left") == b"2"
    [lease] = await take(rh, "q")
    await b.settle([done(lease)])
    assert await status(rh, "c") is JobStatus.PENDING


async def test_damaged_workflow_keys_never_fail_the_settle_that_ends_a_job(
    rh: RedisHarness,
) -> None:
    b, k = rh.broker, rh.broker.keys
    await b.enqueue([node("q", "a"), node("q", "b", "a")])
    await rh.client.delete(k.workflow(WF))
    await rh.client.set(k.workflow(WF), "not a hash")
    [lease] = await take(rh, "q")

    assert await b.settle([done(lease)]) == [True]  # the job ends; its workflow is left

    assert await status(rh, "a") is JobStatus.COMPLETED
    await rh.client.delete(k.wf_of)
    await rh.client.set(k.wf_of, "not a hash either")
    await b.enqueue([make_job("q", job_id="plain")])
    [lease] = await take(rh, "q")
    assert await b.settle([done(lease)]) == [True]


async def test_a_parent_kept_in_the_batch_is_checked_as_the_stored_job(rh: RedisHarness) -> None:
    """A batch job whose id is already stored unfinished is kept as it was: a job waiting for it
    waits for that job, which must be of its workflow or of none."""
    b = rh.broker
    await b.enqueue([node("q", "p", workflow="w-other")])
    with pytest.raises(ValueError, match="'p', which belongs to another workflow"):
        await b.enqueue([node("q", "p"), node("q", "child", "p")])
    assert await b.get("child") is None


async def test_a_plain_job_earlier_in_the_batch_joins_the_workflow(rh: RedisHarness) -> None:
    b = rh.broker
    got = await b.enqueue([make_job("q", job_id="plain"), node("q", "child", "plain")])
    assert [j.status for j in got] == [JobStatus.PENDING, JobStatus.DEFERRED]
    state = await b.workflow(WF)
    assert state is not None
    assert [n.id for n in state.nodes] == ["plain", "child"]
    [lease] = await take(rh, "q")
    await b.settle([done(lease)])
    assert await status(rh, "child") is JobStatus.PENDING


async def test_a_released_job_keeps_its_priority_and_its_group(rh: RedisHarness) -> None:
    b, k = rh.broker, rh.broker.keys
    ranked = msgspec.structs.replace(node("r", "ranked", "a"), priority=5)
    grouped = msgspec.structs.replace(node("g", "grouped", "a"), group="tenant-1")
    await b.enqueue([node("q", "a"), ranked, grouped])
    [lease] = await take(rh, "q")
    await b.settle([done(lease)])

    assert await rh.client.zcard(k.ranked("r")) == 1
    assert await rh.client.zcard(k.queue("g", "groups")) == 1
    assert [held.job.id for held in await take(rh, "r")] == ["ranked"]
    assert [held.job.id for held in await take(rh, "g")] == ["grouped"]
