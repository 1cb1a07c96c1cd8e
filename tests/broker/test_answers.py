"""Each script's answer (``Request.answer``) read straight from raw replies, as the transports
give them (bytes and ints), without Redis: the normal replies, and the poison and error-like
replies each script can give (unreadable records, ids and names that are not UTF-8, a job in
another queue). Error replies never reach ``answer``: the transport raises them first."""

from __future__ import annotations

from typing import Any

import pytest

from taskit.broker.base import OnceState
from taskit.broker.redis import requests
from taskit.broker.redis.records import State, format_state
from taskit.errors import CorruptJobError
from taskit.job import Job, JobStatus, LeaseState, OutcomeKind, QueueStats, stored_form
from tests.broker._helpers import make_job

QA, QB = "qa", "q|b"
NOT_UTF8 = b"\xff\xfe"


def state(
    status: JobStatus = JobStatus.PENDING,
    *,
    queue: str = QA,
    attempts: int = 0,
    token: str = "",
    cancel: bool = False,
) -> bytes:
    """A state string as the scripts write it."""
    started = 1_700_000_000.0 if status is JobStatus.RUNNING else None
    return format_state(
        State(status, attempts, 0, "", token, cancel, None, started, None, None, queue)
    )


def spec_of(job: Job) -> bytes:
    return stored_form(job)[1]


def leased_row(job: Job, q: int, *, token: str = "s.1", cancel: bool = False) -> list[Any]:
    """One (q, id, spec, state, error) row of a reserve or reclaim reply."""
    running = state(JobStatus.RUNNING, queue=job.queue, attempts=1, token=token, cancel=cancel)
    return [q, job.id.encode(), spec_of(job), running, b""]


# -- reading and admin -------------------------------------------------------------------------
def test_get_reads_a_record_and_none() -> None:
    job = make_job(QA, 1, 2)
    assert requests.Get(job.id).answer(None) is None
    got = requests.Get(job.id).answer([spec_of(job), state(), b"", b"", b""])
    assert got is not None
    assert (got.id, got.task, got.status, got.payload) == (job.id, job.task, JobStatus.PENDING,
                                                           job.payload)  # fmt: skip


def test_get_answers_a_stand_in_for_a_spec_that_does_not_decode() -> None:
    got = requests.Get("j").answer([b"not msgpack", state(), b"", b"", b""])
    assert got is not None
    assert got.status is JobStatus.PENDING
    assert got.error is not None
    assert got.error.startswith("stored job does not decode")


@pytest.mark.parametrize(
    ("spec", "state_", "field"),
    [
        (b"no length prefix", b"", "record"),  # the script could not split the record
        (b"3:abcspec", b"", "state"),
        (b"spec", b"pending|x|0||||||||qa", "attempts"),
    ],
)
def test_get_names_the_unreadable_field(spec: bytes, state_: bytes, field: str) -> None:
    with pytest.raises(CorruptJobError) as caught:
        requests.Get("j").answer([spec, state_, b"", b"", b""])
    assert caught.value.field == field
    assert caught.value.job_id == "j"


def test_cancel_answers_a_bool_or_the_queue_the_job_is_in() -> None:
    cancel = requests.Cancel("j", QA, 1000, 1000)
    assert cancel.answer(1) is True
    assert cancel.answer(0) is False
    assert cancel.answer(QB.encode()) == requests.Moved(QB)


def test_stats_counts_each_queue_in_order() -> None:
    got = requests.Stats([QA, QB]).answer([1, 2, 3, 4, 5, 6, 8, 0, 0, 0, 0, 0, 7, 0])
    assert got == {
        QA: QueueStats(queued=1, scheduled=2, running=3, completed=4, failed=5, dead=6, deferred=8),
        QB: QueueStats(queued=0, scheduled=0, running=0, completed=0, failed=0, dead=7),
    }
    assert requests.Stats([]).answer([]) == {}


def test_dead_letters_shows_every_row_even_unreadable_ones() -> None:
    job = make_job(QA)
    dead = state(JobStatus.DEAD_LETTER, attempts=3)
    reply = [
        job.id.encode(), spec_of(job), dead, b"",
        NOT_UTF8, spec_of(job), dead, b"",
        b"torn", b"no length prefix", b"", b"",
    ]  # fmt: skip
    good, bad_id, torn = requests.DeadLetters(QA, 0, 10).answer(reply)
    assert (good.id, good.status, good.attempts) == (job.id, JobStatus.DEAD_LETTER, 3)
    for stand_in, why in ((bad_id, "is not UTF-8"), (torn, "record")):
        assert stand_in.status is JobStatus.DEAD_LETTER
        assert stand_in.error_type == "CorruptJobError"
        assert stand_in.error is not None
        assert why in stand_in.error
        assert stand_in.queue == QA
    assert bad_id.id == NOT_UTF8.decode(errors="backslashreplace")
    assert requests.DeadLetters(QA, 0, 10).answer([]) == []


@pytest.mark.parametrize(
    "request_", [requests.RequeueDead(QA, ["j"]), requests.Purge(QA, 1000), requests.PurgeDead(QA)]
)
def test_batch_scripts_answer_a_count(request_: requests.Request[int]) -> None:
    assert request_.answer(0) == 0
    assert request_.answer(requests.BATCH) == requests.BATCH


# -- coordination ------------------------------------------------------------------------------
def test_announce_withdraw_and_live() -> None:
    requests.Announce("w", b"r", 1000).answer(1)  # the script always answers 1: nothing to read
    assert requests.Withdraw("w").answer(1) is True
    assert requests.Withdraw("w").answer(0) is False
    reply = [b"a", b"rec-a", NOT_UTF8, b"rec-b"]
    assert requests.Live().answer(reply) == {"a": b"rec-a", "\\xff\\xfe": b"rec-b"}
    assert requests.Live().answer([]) == {}


def test_once_begin_and_end() -> None:
    begin = requests.OnceBegin("k", "t", 1000)
    assert begin.answer(b"taken") is OnceState.TAKEN
    assert begin.answer(b"done") is OnceState.DONE
    assert begin.answer(b"held") is OnceState.HELD
    assert requests.OnceEnd("k", "t", 0).answer(1) is True
    assert requests.OnceEnd("k", "t", 5000).answer(0) is False


# -- the job lifecycle -------------------------------------------------------------------------
def enqueue_of(*jobs: Job) -> requests.Enqueue:
    return requests.Enqueue(
        jobs, [stored_form(job) for job in jobs], [0] * len(jobs), [j.queue for j in jobs]
    )


def test_enqueue_answers_the_stored_jobs_and_the_kept_ones() -> None:
    new, kept = make_job(QA), make_job(QB)
    request = enqueue_of(new, kept)
    running = state(JobStatus.RUNNING, queue=QB, attempts=1, token="s.1")
    got = request.answer([b"ok", 0, b"", state(), b"", b"", 1, spec_of(kept), running, b"", b""])
    assert isinstance(got, list)
    assert got[0] is request.forms[0][0]  # stored as sent: the stored form itself, no copy
    assert (got[1].id, got[1].status, got[1].attempts) == (kept.id, JobStatus.RUNNING, 1)


def test_enqueue_answers_a_job_stored_in_another_state_from_its_spec() -> None:
    job = make_job(QA)
    delayed = state(JobStatus.SCHEDULED)
    got = enqueue_of(job).answer([b"ok", 0, b"", delayed, b"", b""])
    assert isinstance(got, list)
    assert [(one.id, one.status) for one in got] == [(job.id, JobStatus.SCHEDULED)]


def test_enqueue_answers_where_a_dead_letter_is() -> None:
    request = enqueue_of(make_job(QA), make_job(QA))
    assert request.answer([b"moved", 2, QB.encode()]) == requests.DeadElsewhere(1, QB)
    with pytest.raises(CorruptJobError) as caught:
        request.answer([b"moved", 1, NOT_UTF8])
    assert caught.value.field == "queue"
    assert caught.value.job_id == request.jobs[0].id
    assert "nothing was enqueued" in caught.value.detail


def test_enqueue_refuses_to_replace_an_unreadable_record() -> None:
    request = enqueue_of(make_job(QA), make_job(QA))
    with pytest.raises(CorruptJobError) as caught:
        request.answer([b"unreadable", 2, b"attempts: 'x'"])
    assert (caught.value.job_id, caught.value.field) == (request.jobs[1].id, "attempts")
    assert caught.value.detail == "'x'; nothing was enqueued"


def test_reserve_answers_leases_with_tokens_and_deadlines() -> None:
    a, b = make_job(QA), make_job(QB)
    request = requests.Reserve([QA, QB], 2, 30_000, "s")
    got = request.answer([1_000_000, -1, *leased_row(a, 1), *leased_row(b, 2, token="s.2")])
    assert [lease.job.id for lease in got.leases] == [a.id, b.id]
    assert [lease.token for lease in got.leases] == [f"s.1|{QA}", f"s.2|{QB}"]
    assert {lease.deadline for lease in got.leases} == {1_030.0}
    assert got.leases[0].job.status is JobStatus.RUNNING
    assert (got.settle, got.wait) == ([], None)


def test_reserve_answers_how_long_to_wait_when_nothing_was_leased() -> None:
    request = requests.Reserve([QA], 1, 30_000, "s")
    assert request.answer([5, 250]).wait == 0.25
    assert request.answer([5, 0]).wait == 0.0
    assert request.answer([5, -1]) == requests.Leased([], [], None)


def test_reserve_dead_letters_rows_that_do_not_decode() -> None:
    good, torn, bad_id = make_job(QA), make_job(QA), make_job(QA)
    rows = [
        *leased_row(good, 1),
        1, torn.id.encode(), b"not msgpack", leased_row(torn, 1)[3], b"",
        1, NOT_UTF8, spec_of(bad_id), leased_row(bad_id, 1, token="s.3")[3], b"",
    ]  # fmt: skip
    got = requests.Reserve([QA], 3, 1000, "s").answer([0, -1, *rows])
    assert [lease.job.id for lease in got.leases] == [good.id]
    assert [o.kind for o in got.settle] == [OutcomeKind.DEAD_LETTER] * 2
    assert got.settle[0].job_id == torn.id
    assert got.settle[0].error is not None
    assert got.settle[0].error.startswith("stored job does not decode")
    # An id that is not UTF-8 is settled under its very bytes, with the reason.
    assert got.settle[1].job_id == NOT_UTF8.decode(errors="surrogateescape")
    assert got.settle[1].token == f"s.3|{QA}"
    assert got.settle[1].error_type == "CorruptJobError"


def test_a_reserved_job_whose_cancel_was_requested_still_runs() -> None:
    job = make_job(QA)
    got = requests.Reserve([QA], 1, 1000, "s").answer([0, -1, *leased_row(job, 1, cancel=True)])
    assert [lease.job.id for lease in got.leases] == [job.id]
    assert got.settle == []


def test_reclaim_answers_leases_and_cancels_jobs_whose_cancel_was_requested() -> None:
    kept, cancelled = make_job(QA), make_job(QB)
    request = requests.Reclaim([QA, QB], 10_000, 100, "s")
    reply = [2_000, *leased_row(kept, 1), *leased_row(cancelled, 2, token="s.2", cancel=True)]
    got = request.answer(reply)
    assert [(lease.job.id, lease.deadline) for lease in got.leases] == [(kept.id, 12.0)]
    assert [(o.job_id, o.kind, o.token) for o in got.settle] == [
        (cancelled.id, OutcomeKind.CANCEL, f"s.2|{QB}")
    ]
    assert got.wait is None
    torn = [1, b"t", b"not msgpack", leased_row(kept, 1)[3], b""]
    assert [o.kind for o in request.answer([0, *torn]).settle] == [OutcomeKind.DEAD_LETTER]


def test_extend_answers_each_lease_state() -> None:
    request = requests.Extend(1000, [("a", QA, "x"), ("b", QA, "y"), ("c", QB, "z")])
    got = request.answer([b"held", b"cancelled", b"lost"])
    assert got == [LeaseState.HELD, LeaseState.CANCELLED, LeaseState.LOST]
    with pytest.raises(ValueError, match="bogus"):
        request.answer([b"bogus"])  # a reply this layout never gives is not taken for a state


def test_settle_answers_applied_or_stale_per_outcome() -> None:
    request = requests.Settle(1000, [("a", "x", "complete", QA, 0, b"", b"")] * 3)
    assert request.answer([1, 0, 1]) == ([True, False, True], [])
    # After the outcomes: the queues whose held-back jobs a freed limit slot let out of line.
    assert request.answer([1, 0, 1, b"qa", b"q|b"]) == ([True, False, True], ["qa", "q|b"])


def test_workflow_requests_read_the_record_results_and_count() -> None:
    from taskit.broker.redis.workflows import pack_ids
    from taskit.job import JobResult

    ok = b"\x82\xa7success\xc3\xa5value\x07"  # msgpack {"success": True, "value": 7}
    fields = [b"created", b"1000", b"n:b", b"2|f||" + pack_ids(["t", QB, "a"]),
              b"n:a", b"1|-||" + pack_ids(["t", QA]), b"e:a", b"completed|0|" + ok]  # fmt: skip
    got = requests.WorkflowGet("w").answer([fields, [b"b", state(JobStatus.DEFERRED)]])
    assert got is not None
    assert [(n.id, n.queue, n.status, n.after) for n in got.nodes] == [
        ("a", QA, JobStatus.COMPLETED, ()), ("b", QB, JobStatus.DEFERRED, ("a",))
    ]  # fmt: skip
    assert got.nodes[0].result == JobResult(success=True, value=7)
    assert got.created_at.timestamp() == 1.0
    assert requests.WorkflowGet("w").answer(None) is None
    results = requests.WorkflowResults("w", ["a", "x"]).answer([b"cancelled|0|", None])
    assert results == [JobResult(success=False, error="job was cancelled", error_type="Cancelled"),
                       None]  # fmt: skip
    with pytest.raises(CorruptJobError, match="'a'"):
        requests.WorkflowResults("w", ["a"]).answer([b"completed|9|"])
    with pytest.raises(CorruptJobError, match="'b'"):
        requests.WorkflowGet("w").answer([[b"n:b", b"x|f||2:t"], []])
    assert requests.WorkflowCancel("w", 1000).answer(3) == 3
