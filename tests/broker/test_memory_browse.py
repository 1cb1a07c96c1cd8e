"""The memory broker's browsing books (``taskit.broker.memory.ended``) on their own: the index
of ended jobs stays as small as the jobs it lists, and the minute counts bucket run times as
``Counts`` documents. The behaviour every broker shares is in ``test_conformance_browse*``."""

from __future__ import annotations

from taskit.broker.browse import COUNTS_KEPT, RUN_TIME_BOUNDS
from taskit.broker.memory.ended import EndIndex, MinuteCounts
from taskit.job import JobStatus

DONE = JobStatus.COMPLETED


def test_the_index_walks_newest_first_from_a_number() -> None:
    index = EndIndex()
    for i in range(5):
        index.add("q", DONE, f"j{i}", 100.0 + i)
    index.add("other", DONE, "x", 100.0)
    index.remove("j2")

    newest = [job_id for _, _, job_id in index.walk("q", DONE, None)]
    numbers = [number for number, _, _ in index.walk("q", DONE, None)]
    below = [job_id for _, _, job_id in index.walk("q", DONE, numbers[1])]

    assert newest == ["j4", "j3", "j1", "j0"]
    assert below == ["j1", "j0"]
    assert [job_id for _, _, job_id in index.walk("q", JobStatus.FAILED, None)] == []


def test_a_job_added_again_moves_to_the_front_and_leaves_its_old_place() -> None:
    index = EndIndex()
    index.add("q", JobStatus.DEAD_LETTER, "a", 1.0)
    index.add("q", JobStatus.DEAD_LETTER, "b", 2.0)
    index.add("q", JobStatus.DEAD_LETTER, "a", 3.0)
    index.add("q", DONE, "b", 4.0)  # ended otherwise: no longer a dead letter

    assert [i for _, _, i in index.walk("q", JobStatus.DEAD_LETTER, None)] == ["a"]
    assert [i for _, _, i in index.walk("q", DONE, None)] == ["b"]


def test_the_index_sheds_removed_and_expired_entries() -> None:
    index = EndIndex()
    for i in range(10_000):
        index.add("q", DONE, f"j{i}", float(i))
        if i % 10:
            index.remove(f"j{i}")  # forgotten, or expired: nine in ten
    kept = sum(1 for _ in index.walk("q", DONE, None))
    assert kept == 1_000
    assert len(index._lists[("q", DONE)]) <= 2 * kept + 64

    index.trim("q", DONE, kept_since=9_000.0)  # past the broker's TTL: the oldest go

    assert [i for _, _, i in index.walk("q", DONE, None)][-1] == "j9010"
    assert len(index._lists[("q", DONE)]) <= 2 * 99 + 64


def test_run_times_fall_in_the_bucket_of_their_bound() -> None:
    counts = MinuteCounts()
    now = 1_699_999_980.0
    for run in (0.0, RUN_TIME_BOUNDS[0], 0.0011, RUN_TIME_BOUNDS[-1], 1e9, -1.0):
        counts.add(now, "q", "completed", run)
    counts.add(now, "q", "enqueued")

    [row] = counts.read(0.0, None, None, now)

    expected = [0] * (len(RUN_TIME_BOUNDS) + 1)
    for bucket in (0, 0, 1, len(RUN_TIME_BOUNDS) - 1, len(RUN_TIME_BOUNDS), 0):
        expected[bucket] += 1
    assert row.runs == tuple(expected)
    assert (row.minute, row.completed, row.enqueued) == (int(now), 6, 1)


def test_old_minutes_are_dropped_as_new_ones_begin() -> None:
    counts = MinuteCounts()
    counts.add(0.0, "q", "enqueued")
    counts.add(COUNTS_KEPT + 60.0, "q", "enqueued")

    assert list(counts._minutes) == [COUNTS_KEPT + 60]
