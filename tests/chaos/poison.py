"""Poison fields under load (issue 11, item 1), shared by the short test and the long-mode runner
(``python -m tests.chaos``; this row alone: ``python -m tests.chaos.poison [--jobs N]``).

Several `taskit worker` processes drain jobs while the test corrupts random live job records in
Redis, one part at a time (a state field, the length prefix or the spec), with values
taskit never writes (``not-a-time``, ``1.5``, ``nan``, garbage bytes...). Each corruption is a
compare-and-set on the record (the test's own tiny script), so a job that moved meanwhile is left
alone rather than rolled back. At the end every acknowledged job must be finished (lost 0),
nothing may be running or waiting (stuck 0), every poisoned job must be a dead letter whose error
names what was unreadable, the healthy ones completed, and every worker still alive.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import redis

from taskit import App
from taskit.broker.redis.keys import Keys
from taskit.broker.redis.records import join_record, parse_state, split_record
from taskit.errors import CorruptJobError
from taskit.job import decode_job
from tests.chaos.harness import PREFIX, Report, cluster
from tests.chaos.producing import enqueue_work

#: State fields by place (the token and the queue hold any text: nothing there is unreadable).
FIELDS = {"status": 0, "attempts": 1, "score": 2, "seq": 3, "cancel": 5, "sched": 6,
          "started": 7, "completed": 8, "failed": 9}  # fmt: skip
#: (An unreadable error alone is in the Hypothesis fuzz, tests/broker/test_poison.py: here a
#: running job would still complete over it, which is right but not a poison to count.)
PARTS = [*FIELDS, "prefix", "spec"]
VALUES = [b"not-a-time", b"1.5", b"-1", b"nan", b"inf", b"1e999", b"0x10", b" 1", b"\xff\xfe",
          b"99999999999999999999999", b"bogus", b"", b"1|2"]  # fmt: skip
#: Replace a record only if it is still what the test read (a test-side compare-and-set).
_CAS = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


@dataclass
class PoisonFigures:
    jobs: int
    workers: int
    poisoned: list[str]
    report: Report
    stuck: int
    dead_with_reason: int  # (or, for a spec spoilt while it ran, completed)
    workers_alive: int
    tracebacks: int
    seconds: float
    parts: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.report.line()} poisoned={len(self.poisoned)} stuck={self.stuck} "
            f"dead_with_reason={self.dead_with_reason} workers_alive={self.workers_alive}/"
            f"{self.workers} tracebacks={self.tracebacks} seconds={self.seconds:.1f}"
        )


def _unreadable(raw: bytes) -> bool:
    try:
        state, spec = split_record(raw)
        parse_state(state)
        decode_job(spec)
    except Exception:  # anything unreadable counts
        return True
    return False


def corrupt_one(client: redis.Redis, rng: random.Random) -> tuple[str, str] | None:
    """Corrupt one random live, readable, not yet dead job record; ``(job id, part)`` or None.
    The part is ``spec@running`` for the spec of a running job: its handler already has it, so
    the job may rightly complete (the finished record keeps the bad spec; get shows a stand-in).
    """
    k = Keys(PREFIX)
    job_id = client.hrandfield(k.jobs)
    if job_id is None:
        return None
    raw = client.hget(k.jobs, job_id)
    if raw is None or _unreadable(raw):
        return None
    state, spec = split_record(raw)
    status = parse_state(state).status.value
    if status == "dead_letter":
        return None
    part, value = rng.choice(PARTS), rng.choice(VALUES)
    if part == "prefix":
        new = value + b":" + state + spec
    elif part == "spec":
        new = join_record(state, value)
    else:
        fields = state.split(b"|", 10)
        fields[FIELDS[part]] = value
        new = join_record(b"|".join(fields), spec)
    if not _unreadable(new):
        return None  # the value happened to be readable there: no poison
    if not client.eval(_CAS, 1, k.jobs, job_id, raw, new):
        return None
    return job_id.decode(), f"{part}@running" if part == "spec" and status == "running" else part


def final_of(client: redis.Redis, job_id: str) -> tuple[str, bytes]:
    """(status or 'unreadable' or 'gone', error bytes) of one job, read straight from Redis."""
    k = Keys(PREFIX)
    live = client.hget(k.jobs, job_id)
    if live is None:
        done = client.hget(k.done(job_id), "state")
        return ("gone" if done is None else parse_state(done).status.value), b""
    try:
        status = parse_state(split_record(live)[0]).status.value
    except CorruptJobError:
        return "unreadable", b""
    return status, client.hget(k.err, job_id) or b""


async def run_poison(
    directory: Path,
    *,
    jobs: int,
    workers: int,
    corrupt_every: float,
    seed: int,
    max_seconds: float = 300.0,
    durations: tuple[float, float] = (0.005, 0.1),
) -> PoisonFigures:
    rng = random.Random(seed)
    with cluster(directory, visibility_timeout=1.0, reaper_interval=0.2) as chaos:
        app = App(chaos.url)
        client = chaos.client()
        poisoned: dict[str, str] = {}
        try:
            for _ in range(workers):
                chaos.spawn("-c", "4")
            keys = [f"p{i}" for i in range(jobs)]
            began = time.monotonic()
            # Half ready at once, half delayed a little: the poison meets reserve, promote and
            # (for jobs running when corrupted) the reaper.
            now = keys[: jobs // 2]
            acked = await enqueue_work(app, now, [rng.uniform(*durations) for _ in now])
            later = app.remote("chaos.work")
            for key in keys[jobs // 2 :]:
                job = await later.options(job_id=key).schedule(
                    rng.uniform(0.1, 1.5), key, rng.uniform(*durations)
                )
                acked.append(job.id)
            with anyio.fail_after(max_seconds):
                while True:
                    hit = corrupt_one(client, rng)
                    if hit:
                        poisoned.setdefault(*hit)
                    stats = (await app.stats(["default"]))["default"]
                    if stats.queued + stats.scheduled + stats.running == 0:
                        break
                    await anyio.sleep(corrupt_every)
            seconds = time.monotonic() - began
        finally:
            await app.close()
        finals = {job_id: final_of(client, job_id) for job_id in acked}
        client.close()
        alive = sum(1 for w in chaos.workers if w.proc.poll() is None)
        tracebacks = sum(w.log.count("Traceback") for w in chaos.workers)
        report = chaos.report(acked)
    stuck = sum(1 for s, _ in finals.values() if s not in ("completed", "dead_letter", "failed"))
    reasons = sum(
        1
        for i, part in poisoned.items()
        if (
            finals[i][0] == "dead_letter"
            and (b"unreadable" in finals[i][1] or b"does not decode" in finals[i][1])
        )
        or (part == "spec@running" and finals[i][0] == "completed")
    )
    parts: dict[str, int] = {}
    for part in poisoned.values():
        parts[part] = parts.get(part, 0) + 1
    return PoisonFigures(
        jobs=len(acked),
        workers=workers,
        poisoned=sorted(poisoned),
        report=report,
        stuck=stuck,
        dead_with_reason=reasons,
        workers_alive=alive,
        tracebacks=tracebacks,
        seconds=seconds,
        parts=parts,
    )


def row_cells(f: PoisonFigures, corrupt_every: float) -> list[object]:
    """The figures-table row of a run (``docs/reliability.md``)."""
    r = f.report
    parts = ", ".join(f"{k} {v}" for k, v in sorted(f.parts.items()))
    return [
        "20",
        f"poison fields ({f.workers} workers x 4, a record corrupted every "
        f"{corrupt_every * 1000:.0f} ms)",
        "none", "1 s", "0.2 s", r.acked, len(r.lost), len(r.dup), len(r.unjustified),
        f"poisoned {len(f.poisoned)} ({parts}); dead letters with a reason "
        f"{f.dead_with_reason}/{len(f.poisoned)}; stuck {f.stuck}; workers alive "
        f"{f.workers_alive}/{f.workers}; tracebacks {f.tracebacks}",
    ]  # fmt: skip


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="row 20 of docs/reliability.md alone")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--corrupt-every", type=float, default=0.01)
    args = parser.parse_args()
    where = Path(tempfile.mkdtemp(prefix="taskit-poison-"))

    async def go() -> PoisonFigures:
        return await run_poison(
            where, jobs=args.jobs, workers=3, corrupt_every=args.corrupt_every, seed=11
        )

    figures = anyio.run(go)
    print(figures.line())
    print("| " + " | ".join(str(c) for c in row_cells(figures, args.corrupt_every)) + " |")
