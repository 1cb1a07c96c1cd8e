"""The SQLite broker's hot path, wall clock and CPU, this tree beside another, interleaved.

A shared machine's wall-clock rates swing from one run to the next, so each round runs every
mode once in this tree and once in the base, one after the other (A/B, then B/A in the next
round), each in a fresh process and on a fresh file; the figures are medians over the rounds,
the ratio this / base is the median of each round's ratio (what a burst of load moves less).

* ``broker1``: the broker alone, ``reserve(count=1)`` then ``settle`` of that one job, as a
  worker at concurrency 1 calls them; jobs/s and CPU µs a job (``time.process_time``).
* ``broker10``: the same with reserve 10, settle 10 (``benchmarks.sqlite``'s "broker alone").
* ``c1``: a ``Worker`` of concurrency 1 draining ``async def`` no-op jobs
  (``benchmarks.sqlite._taskit_drain(jobs, 1, "normal", False, 0, "async")``); jobs/s.
* ``c1def``: the same with ``def`` jobs (each on a handler thread, as Huey runs its tasks).
* ``thread1``: the floor of another design, Huey's shape: one thread that takes a job, calls a
  no-op function and settles it with the next take, each step one transaction on the store's
  blocking connection (``Store.run_blocking``: the settle, the workflow ends, the take), with
  no event loop, worker, log line or heartbeat; jobs/s and CPU µs a job.
* ``huey1``: Huey's consumer draining as ``benchmarks.sqlite`` has it drain, one worker thread,
  at its defaults (``synchronous`` FULL), for a ratio within the round (the base's run of it
  is the same code: leave it out with ``--base``).

``--base REV`` copies ``taskit/`` at that commit (``git archive``) and puts it first on the
path of the base's processes; the driver (``benchmarks/``) is this tree's for both. Writes
``benchmarks/results/sqlite-hot-<date>[-TAG].md`` and ``.json``.

    .venv/bin/python -m benchmarks.sqlite_hot --base main [--rounds 5] [--jobs 3000] [--tag T]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from benchmarks._machine import machine_line, package_versions
from benchmarks._trees import run_child
from benchmarks.sqlite_instructions import base_tree

RESULTS = Path(__file__).parent / "results"
MODES = {
    "broker1": "broker alone, reserve 1 + settle 1",
    "broker10": "broker alone, reserve 10 + settle 10",
    "c1": "worker c1 drain, async def job",
    "c1def": "worker c1 drain, def job",
    "thread1": "one thread taking, running, settling (no worker)",
    "huey1": "Huey's consumer, one worker thread, its default (FULL)",
}


async def _broker(jobs: int, per: int) -> dict[str, float]:
    """Reserve ``per`` and settle them until ``jobs`` are done: jobs/s and CPU µs a job."""
    from benchmarks.sqlite import _fresh, _taskit_app
    from taskit.job import Outcome, OutcomeKind

    app, probe = _taskit_app(_fresh())
    for first in range(0, jobs, 500):
        await app.enqueue_many([probe.prepare(k, 0.0) for k in range(first, first + 500)])
    began, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < jobs:
        leases = await app.broker.reserve(["default"], count=per, lease=30.0, timeout=0)
        outcomes = [Outcome(job_id=held.job.id, token=held.token, kind=OutcomeKind.COMPLETE)
                    for held in leases]  # fmt: skip
        assert all(await app.broker.settle(outcomes))
        done += len(leases)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    await app.close()
    return {"per_s": jobs / wall, "cpu_us": cpu / jobs * 1e6}


def _thread(jobs: int) -> dict[str, float]:
    """``thread1``: one thread taking, running and settling jobs on the store, no worker."""
    from benchmarks.sqlite import _fresh, _taskit_app
    from taskit._storable import storable
    from taskit.broker.sqlite import lifecycle, outcomes, workflows
    from taskit.job import Lease, Outcome, OutcomeKind

    async def queued() -> Any:
        app, probe = _taskit_app(_fresh())
        for first in range(0, jobs, 500):
            await app.enqueue_many([probe.prepare(k, 0.0) for k in range(first, first + 500)])
        return app

    app = anyio.run(queued)
    store, ttl = app.broker._store, app.broker._result_ttl
    ran: list[str] = []
    began, cpu = time.perf_counter(), time.process_time()
    (leases, _), _ = store.run_blocking(lambda tx: lifecycle.take(tx, ["default"], 1, 30.0))
    while leases:
        held = leases[0]
        ran.append(held.job.id)  # the job "runs"
        checked = [storable(Outcome(job_id=held.job.id, token=held.token,
                                    kind=OutcomeKind.COMPLETE))]  # fmt: skip

        def step(tx: Any, checked: Any = checked) -> list[Lease]:
            outcomes.settle(tx, checked, ttl)
            workflows.apply_ends(tx, ttl)
            return lifecycle.take(tx, ["default"], 1, 30.0)[0]

        leases, _ = store.run_blocking(step)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert len(ran) == jobs, len(ran)
    anyio.run(app.close)
    return {"per_s": jobs / wall, "cpu_us": cpu / jobs * 1e6}


def child(mode: str, jobs: int) -> dict[str, float]:
    """One run of ``mode`` in this process (its figures)."""
    if mode == "thread1":
        return _thread(jobs)
    if mode == "huey1":
        from benchmarks.sqlite import _huey_drain

        return {"per_s": _huey_drain(jobs, "default", 1)}
    if mode in ("c1", "c1def"):
        from benchmarks.sqlite import _taskit_drain

        body = "async" if mode == "c1" else "def"
        return {"per_s": anyio.run(_taskit_drain, jobs, 1, "normal", False, 0, body)}
    return anyio.run(_broker, jobs, int(mode.removeprefix("broker")))


def run_in(tree: Path | None, mode: str, jobs: int) -> dict[str, float]:
    """``child`` in a fresh process importing taskit from ``tree`` (None: this tree)."""
    result: dict[str, float] = json.loads(
        run_child("benchmarks.sqlite_hot", tree, mode, str(jobs))[-1]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=False, help="an earlier commit to set beside this tree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=3000, help="a multiple of 500")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--tag", default="")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import taskit

        print(taskit.__file__)
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    modes = args.modes.split(",")
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="taskit-base-") as scratch:
        trees: dict[str, Path | None] = {"this tree": None}
        if args.base:
            trees[f"base ({base_tree(args.base, Path(scratch))})"] = Path(scratch)
        for n in range(args.rounds):
            order = list(trees.items()) if n % 2 == 0 else list(reversed(trees.items()))
            for mode in modes:
                for label, tree in order:
                    got = run_in(tree, mode, args.jobs)
                    runs.setdefault(label, {}).setdefault(mode, []).append(got)
                    print(n, label, mode, got, flush=True)
    write(runs, modes, args)


def _median(figures: list[dict[str, float]], key: str) -> float | None:
    values = [f[key] for f in figures if key in f]
    return statistics.median(values) if values else None


def write(runs: dict[str, dict[str, list[dict[str, float]]]], modes: list[str],
          args: argparse.Namespace) -> None:  # fmt: skip
    labels = list(runs)
    lines = ["| mode | figure | " + " | ".join(labels) + " | this / base |",
             "|---" * (len(labels) + 3) + "|"]  # fmt: skip
    for mode in modes:
        for key, unit in (("per_s", "jobs/s"), ("cpu_us", "CPU µs a job")):
            values = [_median(runs[label][mode], key) for label in labels]
            if any(v is None for v in values):
                continue
            shown = [f"{v:,.1f}" for v in values if v is not None]
            ratio = ""
            if len(labels) > 1:
                pairs = zip(runs[labels[0]][mode], runs[labels[-1]][mode], strict=True)
                ratio = f"{statistics.median(a[key] / b[key] for a, b in pairs):.2f}"
            lines.append(f"| {MODES[mode]} | {unit} | " + " | ".join(shown) + f" | {ratio} |")
    huey = runs[labels[0]].get("huey1")
    if huey:  # each mode's jobs/s against Huey's in the same round (this tree's)
        lines += ["", "| mode | this tree / Huey, one thread (median of the rounds' ratios) |",
                  "|---|---|"]  # fmt: skip
        for mode in modes:
            if mode != "huey1":
                pairs = zip(runs[labels[0]][mode], huey, strict=True)
                versus = statistics.median(a["per_s"] / b["per_s"] for a, b in pairs)
                lines.append(f"| {MODES[mode]} | {versus:.2f} |")
    stamp = datetime.now(UTC)
    name = f"sqlite-hot-{stamp:%Y-%m-%d}" + (f"-{args.tag}" if args.tag else "")
    base = f" --base {args.base}" if args.base else ""
    head = (
        f"# SQLite broker's hot path: wall clock and CPU ({stamp:%Y-%m-%d %H:%M} UTC)\n\n"
        f"`python -m benchmarks.sqlite_hot{base} --rounds {args.rounds} --jobs {args.jobs} "
        f"--modes {args.modes}`; "
        f"median of {args.rounds} interleaved rounds, each run a fresh process and file, "
        "the ratio the median of the rounds' ratios; "
        f"{machine_line()} {package_versions(('anyio',))}.\n\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(head + "\n".join(lines) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"runs": runs, "args": vars(args)}))
    print(f"wrote {RESULTS / name}.md")


if __name__ == "__main__":
    main()
