"""Chords under kills (catalogue row 32), shared by the short test and a long run.

``taskit worker`` processes of ``tests.apps.chaos_workflow_app`` run ``chords`` chords of
``members`` members each (a member sleeps 5-30 ms; the callback records its side effect in Redis
with its job id and attempt) while a random worker is SIGKILLed every ``kill_every`` seconds and
another spawned; the chords are enqueued while the storm runs. Checked afterwards, from the
workflow records, the callbacks' side effects in Redis and the ledger:

* every chord ended, COMPLETED (the tasks never fail; retries are plenty);
* **missing**: a chord whose callback has no side effect, or did not complete;
* **doubled**: a callback whose side effect was recorded twice for one attempt, a callback
  started again with no kill, reclaim, retry or release in between (the storm checker's
  unjustified dup), or a side effect of a job that is no chord's callback;
* **misfed**: a callback fed other results than its members', in order;
* no job lost (the storm checker), and nothing left DEFERRED.

Reruns of a callback after its worker was killed mid-run are at-least-once delivery, not a
second release: they are counted (``reruns``), with distinct attempts, and justified.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import anyio

from taskit import App, chord, group
from taskit.workflow import WorkflowState, WorkflowStatus
from tests.chaos.harness import Cluster, Report
from tests.e2e.helpers import WorkerProcess

APP = "tests.apps.chaos_workflow_app:app"
#: Chords enqueued between two looks at the storm.
BATCH = 10
#: The Redis list the callbacks record their runs in (the app reads it from its environment).
EFFECTS = "chaos-workflows:effects"


@dataclass
class ChordStormFigures:
    chords: int
    members: int
    kills: int
    seconds: float
    report: Report
    unfinished: list[str] = field(default_factory=list)
    not_completed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    misfed: list[str] = field(default_factory=list)
    reruns: int = 0
    deferred_left: int = 0

    def line(self) -> str:
        return (
            f"chords={self.chords}x{self.members} {self.report.line()} kills={self.kills} "
            f"seconds={self.seconds:.1f} unfinished={len(self.unfinished)} "
            f"missing={len(self.missing)} doubled={len(self.doubled)} "
            f"misfed={len(self.misfed)} callback_reruns={self.reruns}"
        )

    def assert_clean(self) -> None:
        problems = {
            "lost": self.report.lost, "unjustified dup": self.report.unjustified,
            "unfinished": self.unfinished, "not completed": self.not_completed,
            "missing": self.missing, "doubled": self.doubled, "misfed": self.misfed,
        }  # fmt: skip
        bad = {name: ids[:5] for name, ids in problems.items() if ids}
        assert not bad, f"{bad} {self.line()}"
        assert self.deferred_left == 0, self.line()


def spawn(chaos: Cluster, *, wait: bool = True) -> WorkerProcess:
    """A worker of the workflow chaos app on the cluster (killed with it)."""
    worker = WorkerProcess(APP, chaos.env(CHAOS_WORKFLOW_EFFECTS=EFFECTS), "-c", "8")
    chaos.workers.append(worker)
    if wait:
        worker.wait_for_line("starting: queues=", timeout=30)
    return worker


async def run_chord_storm(
    chaos: Cluster, *, chords: int, members: int, workers: int, kill_every: float, seed: int,
    max_seconds: float = 300.0,
) -> ChordStormFigures:  # fmt: skip
    rng = random.Random(seed)
    app = App(chaos.url)
    member, tally = app.remote("chaos.member"), app.remote("chaos.tally")
    ids: list[str] = []
    kills = 0
    try:
        live = [spawn(chaos) for _ in range(workers)]
        began = time.monotonic()
        next_kill = began + kill_every
        with anyio.fail_after(max_seconds):
            while True:
                for c in range(len(ids), min(len(ids) + BATCH, chords)):
                    calls = [member.s(c, i, rng.uniform(0.005, 0.03)) for i in range(members)]
                    workflow = await chord(group(*calls), tally.step(c)).enqueue()
                    ids.append(workflow.id)
                stats = (await app.stats(["default"]))["default"]
                busy = stats.queued + stats.scheduled + stats.running + stats.deferred
                if len(ids) == chords and busy == 0:
                    break
                if time.monotonic() >= next_kill:
                    chaos.kill(live.pop(rng.randrange(len(live))))
                    kills += 1
                    live.append(spawn(chaos, wait=False))
                    next_kill = time.monotonic() + kill_every
                await anyio.sleep(0.05)
        seconds = time.monotonic() - began
        states = [await app.workflow(i).state() for i in ids]
        deferred_left = (await app.stats(["default"]))["default"].deferred
    finally:
        await app.close()
    acked = [node.id for state in states for node in state.nodes]
    figures = ChordStormFigures(
        chords=chords, members=members, kills=kills, seconds=seconds,
        report=chaos.report(acked), deferred_left=deferred_left,
    )  # fmt: skip
    check_chords(figures, states, read_effects(chaos))
    return figures


def read_effects(chaos: Cluster) -> list[tuple[str, int, int, list[str]]]:
    """Every callback run's side effect: (job id, attempt, chord, results)."""
    client = chaos.client()
    try:
        return [tuple(json.loads(raw)) for raw in client.lrange(EFFECTS, 0, -1)]
    finally:
        client.close()


def check_chords(
    figures: ChordStormFigures,
    states: list[WorkflowState],
    effects: list[tuple[str, int, int, list[str]]],
) -> None:
    """Fill in the chord checks of ``figures`` (see the module docstring)."""
    runs: dict[str, list[int]] = defaultdict(list)
    fed: dict[str, list[list[str]]] = defaultdict(list)
    for job_id, attempt, _, results in effects:
        runs[job_id].append(attempt)
        fed[job_id].append(results)
    callbacks = set()
    unjustified = set(figures.report.unjustified)
    for c, state in enumerate(states):
        if not state.finished:
            figures.unfinished.append(state.id)
        elif state.status is not WorkflowStatus.COMPLETED:
            figures.not_completed.append(state.id)
        [callback] = state.sinks
        callbacks.add(callback.id)
        attempts = runs.get(callback.id, [])
        if not attempts or callback.status.value != "completed":
            figures.missing.append(callback.id)
        if len(set(attempts)) != len(attempts) or callback.id in unjustified:
            figures.doubled.append(callback.id)
        figures.reruns += max(len(attempts) - 1, 0)
        want = [f"{c}.{i}" for i in range(figures.members)]
        if any(results != want for results in fed.get(callback.id, [])):
            figures.misfed.append(callback.id)
    figures.doubled += sorted(set(runs) - callbacks)  # a side effect of no chord's callback
