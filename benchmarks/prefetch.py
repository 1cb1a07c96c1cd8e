"""Worker prefetch: drain rates with 0..N jobs held beyond the idle runners, beside the base tree.

One ``Worker`` (``run(burst=True)``) drains ``--jobs`` queued no-op jobs (a ``def`` handler, as
``benchmarks/sqlite.py``'s drain rows) on the SQLite broker (a fresh file on the disk, in
``benchmarks/.sqlite-tmp/``), the memory broker and a private ``redis-server`` (``--port``), at
concurrency 1 and 10. Variants: the base tree (``--base``, default ``main``: no prefetch there),
then this tree at each ``--prefetch`` value (0 is the base's behaviour: reserve only for idle
runners). Rate: jobs / time from the worker's start to its last job's end, after a warm-up drain
of 200 jobs in the same process. Each measurement runs in a process of its own, the variants in a
shuffled order within a round (seeded), over ``--runs`` rounds; the table gives the median rate
and the median, over rounds, of each variant's ratio to the base in the same round.

Wall-clock rates on a shared 2-core machine swing several-fold between runs; two figures noise
cannot move much are given beside them: the process's CPU per job (``time.process_time``, every
thread), the share of jobs a runner had to wait for (the hand-off was empty when it asked: the
job came only after a reserve's round trip; counted by wrapping ``Handoff.get``) and, on SQLite,
the store's transactions per job (``BEGIN IMMEDIATE`` counted by wrapping the store's
``transaction``): a reserve and a settle queued together share one.

    .venv/bin/python -m benchmarks.prefetch [--base main] [--runs 3] [--jobs 3000]
        [--prefetch 0,1,2,4] [--port 6391]

Writes ``benchmarks/results/prefetch-<date>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from benchmarks._machine import machine_line
from benchmarks._server import redis_server
from benchmarks.overhead import Tree, base_tree, make_tree

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCRATCH = ROOT / "benchmarks" / ".sqlite-tmp"
BROKERS = ("sqlite", "memory", "redis")
CONCURRENCY = (1, 10)


# -- one measurement (a child process) ---------------------------------------------------------
def count_transactions() -> list[int]:
    """Wrap the SQLite store's ``transaction`` (every ``BEGIN IMMEDIATE``); the count so far."""
    from taskit.broker.sqlite import store

    counted = [0]
    begin = store.transaction

    def counting(conn: Any) -> None:
        counted[0] += 1
        begin(conn)

    store.transaction = counting
    return counted


def count_waits() -> list[int]:
    """Wrap ``Handoff.get``: count the calls that found nothing waiting (a runner waited)."""
    from taskit._handoff import Handoff

    counted = [0]
    get = Handoff.get

    async def counting(self: Handoff) -> Any:
        if not len(self):
            counted[0] += 1
        return await get(self)

    Handoff.get = counting  # type: ignore[method-assign]
    return counted


async def measure_here(
    broker: str, concurrency: int, prefetch: int | None, jobs: int, url: str
) -> dict[str, float]:
    """A warm-up drain, then the measured one: rate, CPU us per job, transactions per job."""
    counted, waits = count_transactions(), count_waits()
    await drain(broker, concurrency, prefetch, 200, url)
    cpu, waits[0] = time.process_time(), 0
    rate = await drain(broker, concurrency, prefetch, jobs, url, counted)
    return {
        "rate": rate,
        "cpu_us": (time.process_time() - cpu) * 1e6 / jobs,
        "waits_per_job": (waits[0] - concurrency) / jobs,  # not the runners' last, at the end
        "tx_per_job": counted[0] / jobs,  # reset by ``drain`` once the jobs are queued
    }


async def drain(
    broker: str,
    concurrency: int,
    prefetch: int | None,
    jobs: int,
    url: str,
    counted: list[int] | None = None,
) -> float:
    """Queue ``jobs`` no-op jobs, drain them; jobs a second. ``counted``: reset to 0 once they
    are queued (the transactions counted are the drain's)."""
    from taskit import App, Settings  # the tree's own taskit, first on PYTHONPATH

    if broker == "sqlite":
        shutil.rmtree(SCRATCH, ignore_errors=True)
        SCRATCH.mkdir(parents=True)
        url = f"sqlite:///{SCRATCH / 'jobs.db'}"
    elif broker == "memory":
        url = "memory://"
    app = App(url, settings=Settings(result_ttl=60.0))
    ends: list[float] = []

    @app.task(name="probe", max_retries=0)
    def probe(k: int) -> None:
        ends.append(time.perf_counter())

    for first in range(0, jobs, 500):
        await app.enqueue_many([probe.prepare(k) for k in range(first, min(first + 500, jobs))])
    if counted is not None:
        counted[0] = 0
    options: dict[str, Any] = {"concurrency": concurrency}
    if prefetch is not None:
        options["prefetch"] = prefetch
    worker = app.worker(**options)
    began = time.perf_counter()
    await worker.run(burst=True)
    assert len(ends) == jobs, (len(ends), jobs)
    await app.close()
    if broker == "redis":
        import redis

        redis.Redis.from_url(url).flushdb()
    return jobs / (ends[-1] - began)


def measure(
    tree: Tree, broker: str, concurrency: int, prefetch: int | None, jobs: int, url: str
) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": tree.pythonpath}
    argv = [sys.executable, "-m", "benchmarks.prefetch", "--one", broker, str(concurrency),
            "none" if prefetch is None else str(prefetch), str(jobs), url]  # fmt: skip
    done = subprocess.run(argv, cwd=tree.shim, env=env, check=True, capture_output=True, text=True)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# -- the run -----------------------------------------------------------------------------------
Run = dict[str, dict[str, float]]


def _median_ratio(runs: list[Run], key: str, base: str, figure: str) -> float:
    return statistics.median(run[key][figure] / run[base][figure] for run in runs)


def table(runs: list[Run], labels: list[str]) -> str:
    lines = [
        "| broker | concurrency | variant | drain/s | / base | CPU us a job | / base "
        "| runner waited, a job | store transactions a job |",
        "|---" * 9 + "|",
    ]
    for broker in BROKERS:
        for c in CONCURRENCY:
            base = f"{broker} c{c} {labels[0]}"
            for label in labels:
                key = f"{broker} c{c} {label}"
                rate = statistics.median(run[key]["rate"] for run in runs)
                cpu = statistics.median(run[key]["cpu_us"] for run in runs)
                tx = statistics.median(run[key]["tx_per_job"] for run in runs)
                waited = statistics.median(run[key]["waits_per_job"] for run in runs)
                ratios = [
                    "" if key == base else f"{_median_ratio(runs, key, base, figure):.2f}"
                    for figure in ("rate", "cpu_us")
                ]
                lines.append(
                    f"| {broker} | {c} | {label} | {rate:,.0f} | {ratios[0]} | {cpu:.0f} | "
                    f"{ratios[1]} | {waited:.2f} | {f'{tx:.2f}' if broker == 'sqlite' else ''} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--prefetch", default="0,1,2,4")
    parser.add_argument("--port", type=int, default=0, help="the private redis-server's port")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        broker, conc, pre, jobs, url = args.one
        prefetch = None if pre == "none" else int(pre)
        print(json.dumps(anyio.run(measure_here, broker, int(conc), prefetch, int(jobs), url)))
        return
    values = [int(v) for v in args.prefetch.split(",")]
    labels = ["base"] + [f"prefetch {v}" for v in values]
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory() as scratch,
        base_tree(args.base, Path(scratch)) as (sha, path),
        redis_server(port=args.port) as url,
    ):
        base, this = make_tree("base", path, Path(scratch)), make_tree("this", ROOT, Path(scratch))
        variants = [(base, None)] + [(this, v) for v in values]
        for n in range(args.runs):
            run: Run = {}
            order = list(zip(labels, variants, strict=True))
            for broker in BROKERS:
                for c in CONCURRENCY:
                    random.Random(f"{n} {broker} {c}").shuffle(order)
                    for label, (tree, prefetch) in order:
                        figures = measure(tree, broker, c, prefetch, args.jobs, url)
                        run[f"{broker} c{c} {label}"] = figures
            runs.append(run)
            print(f"round {n + 1}:\n{table([run], labels)}", flush=True)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    stamp = datetime.now(UTC)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    name = f"prefetch-{stamp:%Y-%m-%d}"
    body = (
        f"# Worker prefetch: drain rates ({stamp:%Y-%m-%d %H:%M} UTC)\n\n"
        f"`python -m benchmarks.prefetch --base {args.base} --runs {args.runs} --jobs "
        f"{args.jobs} --prefetch {args.prefetch}`; base {sha}; median of {args.runs} round(s), "
        f"ratios to the base within each round; {machine_line()}; load average "
        f"{load}. A `def` no-op job; `Worker.run(burst=True)`, one process a measurement.\n\n"
        + table(runs, labels)
        + "\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(body)
    (RESULTS / f"{name}.json").write_text(json.dumps({"runs": runs, "args": vars(args)}, indent=1))
    print(body)
    print(f"wrote {RESULTS / name}.md")


if __name__ == "__main__":
    main()
