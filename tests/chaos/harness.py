"""The chaos harness: a private redis-server, `taskit worker` subprocesses of
``tests.apps.chaos_app``, the ledger they write, and the checker that reads it.

The checker (``check``) computes, from the acknowledged enqueues and the ledger:

* **lost**: acknowledged job ids with no end: not completed, failed, dead-lettered or cancelled,
  neither in the broker's final state nor by an applied settle in the ledger;
* **dup**: jobs whose handler started more than once;
* **unjustified dup**: a start after the first with no justification since the previous start:
  an expired lease taken over (``C``), an applied retry or release of that job, or the death
  (SIGKILL, crash) of the process that ran the previous start.
* **rollback reruns**: starts after the first with, in between, a restart of Redis that lost
  data (``rollbacks``: the times Redis was killed when its persistence had a window); Redis
  forgot that the job had run, so it runs again. Counted apart: not a fencing failure, the price of
  the persistence setting.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from taskit.broker.redis.keys import Keys
from taskit.broker.redis.records import parse_state, split_record
from taskit.errors import CorruptJobError
from tests.e2e.helpers import ROOT, RedisServer, WorkerProcess

APP = "tests.apps.chaos_app:app"
PREFIX = "taskit"  # the chaos app's broker uses the default prefix on its private server
FINAL = {"completed", "failed", "dead_letter", "cancelled"}
#: Settle kinds that end a job.
ENDING = {"complete": "completed", "fail": "failed", "dead_letter": "dead_letter",
          "cancel": "cancelled"}  # fmt: skip


# -- the ledger ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # R, C, S, E, X
    job_id: str
    pid: int
    at: float
    attempt: int = 0
    token: str = ""
    outcome: str = ""  # E: ok / error type; X: settle kind
    applied: str = ""  # X: "1", "0" or "error"


def parse_line(line: str) -> Entry | None:
    """One ledger line, or None for a torn or foreign line."""
    parts = line.rstrip("\n").split("|")
    try:
        kind = parts[0]
        if kind in ("R", "C"):
            # the token holds a '|' itself: <rand>|<queue>
            job_id, attempt, rand, queue, pid, at = parts[1:7]
            return Entry(kind, job_id, int(pid), float(at), int(attempt), f"{rand}|{queue}")
        if kind == "S":
            return Entry(kind, parts[1], int(parts[2]), float(parts[3]))
        if kind == "E":
            return Entry(kind, parts[1], int(parts[2]), float(parts[3]), outcome=parts[4])
        if kind == "X":
            job_id, rand, queue, what, applied, pid, at = parts[1:8]
            return Entry(kind, job_id, int(pid), float(at), token=f"{rand}|{queue}",
                         outcome=what, applied=applied)  # fmt: skip
    except (IndexError, ValueError):
        return None
    return None


def read_ledger(directory: Path) -> list[Entry]:
    """Every whole line of every worker's ledger, ordered by time."""
    entries: list[Entry] = []
    for path in sorted(directory.glob("*.ledger")):
        for line in path.read_text().splitlines():
            entry = parse_line(line)
            if entry is not None:
                entries.append(entry)
    entries.sort(key=lambda e: e.at)
    return entries


# -- the checker ---------------------------------------------------------------------------------
@dataclass
class Report:
    acked: int
    lost: list[str]
    dup: list[str]
    unjustified: list[str]
    max_attempts: int
    starts: int
    ended: dict[str, str] = field(default_factory=dict)
    rollback_reruns: list[str] = field(default_factory=list)

    @property
    def dup_pct(self) -> float:
        return 100.0 * len(self.dup) / self.acked if self.acked else 0.0

    def assert_clean(self) -> None:
        """lost = 0 and unjustified dup = 0, or an AssertionError with the figures."""
        assert not self.lost, f"lost {self.lost[:10]}: {self.line()}"
        assert not self.unjustified, f"unjustified dup {self.unjustified[:10]}: {self.line()}"

    def line(self) -> str:
        return (
            f"acked={self.acked} lost={len(self.lost)} dup={len(self.dup)} "
            f"({self.dup_pct:.2f}%) unjustified_dup={len(self.unjustified)} "
            f"max_attempts={self.max_attempts} starts={self.starts} "
            f"rollback_reruns={len(self.rollback_reruns)}"
        )


def check(
    acked: Iterable[str],
    entries: list[Entry],
    final: dict[str, str],
    deaths: dict[int, float],
    rollbacks: Iterable[float] = (),
) -> Report:
    """Compare acknowledged ids with the ledger and the broker's final statuses.

    ``final``: job id -> status in the broker at the end (absent: unknown/expired).
    ``deaths``: pid -> time that process was killed or crashed. ``rollbacks``: times Redis
    was killed with a persistence window (its state may have gone back in time).
    """
    rollbacks = list(rollbacks)
    acked = list(dict.fromkeys(acked))
    ended: dict[str, str] = {i: s for i, s in final.items() if s in FINAL}
    starts: defaultdict[str, list[Entry]] = defaultdict(list)
    excuses: defaultdict[str, list[float]] = defaultdict(list)
    attempts: defaultdict[str, int] = defaultdict(int)
    for e in entries:
        if e.kind == "S":
            starts[e.job_id].append(e)
        elif e.kind == "C":
            excuses[e.job_id].append(e.at)
        elif e.kind in ("R",):
            attempts[e.job_id] = max(attempts[e.job_id], e.attempt)
        elif e.kind == "X" and e.applied == "1":
            if e.outcome in ENDING:
                ended.setdefault(e.job_id, ENDING[e.outcome])
            elif e.outcome in ("retry", "release"):
                excuses[e.job_id].append(e.at)
    lost = [i for i in acked if i not in ended]
    dup = [i for i in acked if len(starts[i]) > 1]
    unjustified = []
    rolled_back = []
    for job_id in dup:
        runs = starts[job_id]
        for before, after in itertools.pairwise(runs):
            died = deaths.get(before.pid)
            ok = any(before.at <= t <= after.at for t in excuses[job_id]) or (
                died is not None and died <= after.at
            )
            if not ok and any(before.at <= t <= after.at for t in rollbacks):
                rolled_back.append(job_id)
                break
            if not ok:
                unjustified.append(job_id)
                break
    return Report(
        acked=len(acked),
        lost=lost,
        dup=dup,
        unjustified=unjustified,
        max_attempts=max(attempts.values(), default=0),
        starts=sum(len(v) for v in starts.values()),
        ended=ended,
        rollback_reruns=rolled_back,
    )


# -- Redis-side checks ---------------------------------------------------------------------------
def final_statuses(client: redis.Redis, ids: Iterable[str], prefix: str = PREFIX) -> dict[str, str]:
    """job id -> status, live or finished, read straight from Redis."""
    keys = Keys(prefix)
    out: dict[str, str] = {}
    ids = list(ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for job_id in chunk:
            pipe.hget(keys.jobs, job_id)
            pipe.hget(keys.done(job_id), "state")
        replies = pipe.execute()
        for i, job_id in enumerate(chunk):
            live, done = replies[2 * i], replies[2 * i + 1]
            try:
                raw = split_record(live)[0] if live is not None else done
                if raw is not None:
                    out[job_id] = parse_state(raw).status.value
            except CorruptJobError:  # an unreadable record has no end: counted as lost
                continue
    return out


def consistency_problems(
    client: redis.Redis, queues: Iterable[str], prefix: str = PREFIX
) -> list[str]:
    """Half-moved jobs: a live job's status must match the one set it sits in, and every set
    member must have a live record with that status."""
    keys = Keys(prefix)
    problems: list[str] = []
    states = {
        k.decode(): parse_state(split_record(v)[0]) for k, v in client.hgetall(keys.jobs).items()
    }
    where: defaultdict[str, list[str]] = defaultdict(list)
    for q in queues:
        for member in client.lrange(keys.fifo(q), 0, -1):
            where[member.decode()].append("pending")
        for member in client.zrange(keys.ranked(q), 0, -1):
            where[member.decode().partition(":")[2]].append("pending")
        for kind, status in (
            ("delayed", "scheduled"),
            ("leases", "running"),
            ("dead", "dead_letter"),
        ):
            for member in client.zrange(keys.queue(q, kind), 0, -1):
                where[member.decode()].append(status)
    for job_id, st in states.items():
        places = where.get(job_id, [])
        want = "scheduled" if st.status.value == "retrying" else st.status.value
        if places != [want]:
            problems.append(f"{job_id}: status {st.status.value} but in {places}")
    for job_id, places in where.items():
        if job_id not in states:
            problems.append(f"{job_id}: in {places} without a record")
    return problems


# -- processes -----------------------------------------------------------------------------------
def log_time(line: str) -> float:
    """The time of a CLI log line (``2026-11-22 10:00:00,123 ...``, local time)."""
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


class Cluster:
    """A private redis-server and chaos workers on it, with the ledger directory and the deaths."""

    def __init__(self, directory: Path, *redis_args: str, **settings: float | int) -> None:
        self.directory = directory
        self.ledger = directory / "ledger"
        self.ledger.mkdir(parents=True, exist_ok=True)
        data = directory / "redis"
        data.mkdir(exist_ok=True)
        self.server = RedisServer(data, None, *redis_args)
        self.settings = {
            "TASKIT_VISIBILITY_TIMEOUT": 2.0,
            "TASKIT_REAPER_INTERVAL": 0.5,
            "TASKIT_BACKOFF": 0.0,
            "TASKIT_GRACE_PERIOD": 5.0,
            "TASKIT_RESULT_TTL": 600.0,
            **{f"TASKIT_{k.upper()}": v for k, v in settings.items()},
        }
        self.workers: list[WorkerProcess] = []
        self.deaths: dict[int, float] = {}
        self.rng = random.Random(0)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def lease(self) -> float:
        return float(self.settings["TASKIT_VISIBILITY_TIMEOUT"])

    @property
    def reaper(self) -> float:
        return float(self.settings["TASKIT_REAPER_INTERVAL"])

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: str(v) for k, v in self.settings.items()}
        env.update(TASKIT_BROKER_URL=self.url, CHAOS_LEDGER=str(self.ledger), **extra)
        return env

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def spawn(
        self, *args: str, wait: bool = True, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        worker = WorkerProcess(APP, env or self.env(), *args)
        self.workers.append(worker)
        if wait:
            worker.wait_for_line("starting: queues=", timeout=30)
        return worker

    def kill(self, worker: WorkerProcess, sig: int = signal.SIGKILL) -> float:
        """Send ``sig``; for SIGKILL, wait for the death and record its time."""
        at = time.time()
        os.kill(worker.pid, sig)
        if sig == signal.SIGKILL:
            worker.proc.wait(timeout=10)
            self.deaths[worker.pid] = at
        return at

    def reap_crashed(self) -> list[WorkerProcess]:
        """Workers that exited on their own since last asked (crashes): their deaths recorded
        at the time we noticed (an upper bound)."""
        gone = []
        for w in self.workers:
            if w.proc.poll() is not None and w.pid not in self.deaths:
                self.deaths[w.pid] = time.time()
                gone.append(w)
        return gone

    def entries(self) -> list[Entry]:
        return read_ledger(self.ledger)

    def report(self, acked: Iterable[str], rollbacks: Iterable[float] = ()) -> Report:
        acked = list(acked)
        client = self.client()
        try:
            final = final_statuses(client, acked)
        finally:
            client.close()
        return check(acked, self.entries(), final, self.deaths, rollbacks)

    def close(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
                self.deaths.setdefault(w.pid, time.time())
            w.close()
        self.server.kill()


@contextmanager
def cluster(directory: Path, *redis_args: str, **settings: float | int) -> Iterator[Cluster]:
    c = Cluster(directory, *redis_args, **settings)
    c.server.start()
    try:
        yield c
    finally:
        c.close()


def wait_until(predicate: Any, timeout: float, interval: float = 0.05, what: str = "") -> None:
    """Poll ``predicate`` until true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def python() -> str:
    return sys.executable


__all__ = ["ROOT", "Cluster", "Entry", "Report", "check", "cluster", "read_ledger"]
