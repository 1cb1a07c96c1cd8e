"""The checker itself, on hand-made ledgers: what counts as lost, dup and unjustified dup."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.harness import Entry, check, parse_line, read_ledger


def start(job_id: str, pid: int, at: float) -> Entry:
    return Entry("S", job_id, pid, at)


def settle(job_id: str, kind: str, at: float, applied: str = "1", pid: int = 1) -> Entry:
    return Entry("X", job_id, pid, at, token="t|q", outcome=kind, applied=applied)


def test_lost_is_acknowledged_minus_every_end() -> None:
    entries = [settle("a", "complete", 1), settle("b", "complete", 1, applied="0")]
    final = {"c": "dead_letter", "d": "running", "e": "cancelled"}
    report = check(["a", "b", "c", "d", "e", "f"], entries, final, {})
    assert report.lost == ["b", "d", "f"]  # a rejected settle ends nothing


def test_a_second_start_needs_a_reclaim_a_retry_a_release_or_a_death() -> None:
    entries = [
        start("reclaimed", 1, 1), Entry("C", "reclaimed", 2, 2), start("reclaimed", 2, 3),
        start("retried", 1, 1), settle("retried", "retry", 2), start("retried", 1, 3),
        start("died", 1, 1), start("died", 2, 3),
        start("bad", 1, 1), settle("bad", "retry", 2, applied="0"), start("bad", 2, 3),
        start("rolled", 1, 1), start("rolled", 2, 3),
    ]  # fmt: skip
    report = check(
        ["reclaimed", "retried", "died", "bad", "rolled"], entries, {}, {1: 2.5}, rollbacks=[0.5]
    )
    assert sorted(report.dup) == ["bad", "died", "reclaimed", "retried", "rolled"]
    # pid 1 died at 2.5: "died" and "bad" (second start at 3, previous runner pid 1) are excused
    assert report.unjustified == []
    assert check(["bad"], entries, {}, {}).unjustified == ["bad"]
    report = check(["rolled"], entries, {}, {}, rollbacks=[2.0])
    assert report.unjustified == []
    assert report.rollback_reruns == ["rolled"]


def test_ledger_lines_parse_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "1.ledger").write_text(
        "R|j1|1|abc.1|default|1|10.5\nS|j1|1|10.6\nE|j1|1|10.7|ok\n"
        "X|j1|abc.1|default|complete|1|1|10.8\nX|j1|abc"
    )
    entries = read_ledger(tmp_path)
    assert [e.kind for e in entries] == ["R", "S", "E", "X"]
    assert entries[0].token == "abc.1|default"
    assert entries[0].attempt == 1
    assert entries[3].applied == "1"
    assert parse_line("garbage") is None
