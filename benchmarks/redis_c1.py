"""A worker of concurrency 1 on Redis: where a job's time goes, against the same drain on SQLite.

A worker that holds one job at a time pays each step alone: on SQLite its settle and its next
reserve are one transaction (``Broker.settle_and_reserve``); on Redis they are two script calls,
two round trips, each paying its script's fixed cost in full (no batch to share it). Each run
drains ``--jobs`` queued ``async def`` no-op jobs with ``Worker(concurrency=1).run(burst=True)``
on a private ``redis-server`` and, in turn, on a fresh SQLite file; then drains them again on
Redis with ``SLOWLOG`` recording every command, to read how long Redis spent in each script a
call (the ``reserve`` and ``settle`` scripts by their SHA; Redis 7 logs the commands a script
runs too, so the log holds some 40 entries a job, and logging them inflates each script's
figure: an upper bound, read apart from the timed drain). Also the round trip of a bare
``PING`` from this process (redis-py's asyncio client, one at a time: not taskit's transport).
Median of ``--runs`` runs. Writes ``benchmarks/results/redis-c1-<date>[-TAG].md`` and ``.json``.

``--base REV``: instead, the Redis drain alone, this tree beside ``taskit/`` at REV (``git
archive``, first on the path of the base's processes), each drain a fresh process, the trees in
turn (A/B, then B/A) for ``--runs`` rounds on one private server; medians, and the median of the
rounds' ratios. Writes ``benchmarks/results/redis-c1-<date>-versus-<sha>[-TAG].md``.

    .venv/bin/python -m benchmarks.redis_c1 [--runs 3] [--jobs 3000] [--base REV] [--tag T]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
from redis.asyncio import Redis

from benchmarks._machine import machine_line, package_versions
from benchmarks._server import redis_server
from benchmarks._trees import run_child
from benchmarks.sqlite import _taskit_drain
from benchmarks.sqlite_instructions import base_tree
from taskit import App, Settings
from taskit.broker.redis.scripts import SCRIPTS

RESULTS = Path(__file__).parent / "results"


async def _drain(url: str, jobs: int) -> float:
    """µs a job of a concurrency-1 drain of ``jobs`` no-op ``async def`` jobs on ``url``."""
    app = App(url, settings=Settings())
    ends: list[float] = []

    @app.task
    async def probe(k: int) -> None:
        ends.append(time.perf_counter())

    for first in range(0, jobs, 500):
        await app.enqueue_many([probe.prepare(k) for k in range(first, first + 500)])
    began = time.perf_counter()
    await app.worker(concurrency=1).run(burst=True)
    await app.close()
    assert len(ends) == jobs, len(ends)
    return (ends[-1] - began) / jobs * 1e6


async def _scripts(url: str, jobs: int) -> dict[str, float]:
    """The drain again with ``SLOWLOG`` on: script calls a job, and Redis's µs a call of each
    script (median), from the log's own durations."""
    client = Redis.from_url(url)
    await client.config_set("slowlog-log-slower-than", 0)
    await client.config_set("slowlog-max-len", 100 * jobs + 1000)
    await client.slowlog_reset()
    await _drain(url, jobs)
    entries = await client.slowlog_get(100 * jobs + 1000)
    await client.config_set("slowlog-log-slower-than", 10000)
    await client.slowlog_reset()  # a log of ~100k entries slows the next run's drain
    await client.aclose()
    by_sha: dict[bytes, list[int]] = {}
    for entry in entries:
        words = entry["command"].split()
        if words and words[0].upper() == b"EVALSHA":
            by_sha.setdefault(words[1], []).append(int(entry["duration"]))
    out = {"evalsha_per_job": sum(len(d) for d in by_sha.values()) / jobs}
    for name in ("reserve", "settle"):
        durations = by_sha.get(SCRIPTS[name].sha.encode(), [])
        out[f"{name}_us"] = statistics.median(durations) if durations else float("nan")
        out[f"{name}_per_job"] = len(durations) / jobs
    return out


async def _ping(url: str, count: int = 5000) -> float:
    """µs a bare ``PING`` round trip, one at a time (redis-py's asyncio client)."""
    client = Redis.from_url(url)
    await client.ping()
    began = time.perf_counter()
    for _ in range(count):
        await client.ping()
    took = (time.perf_counter() - began) / count * 1e6
    await client.aclose()
    return took


def one_run(url: str, jobs: int) -> dict[str, float]:
    async def run() -> dict[str, float]:
        flush = Redis.from_url(url)
        await flush.flushall()
        figures = {"redis_us": await _drain(url, jobs)}
        await flush.flushall()
        figures["sqlite_us"] = 1e6 / await _taskit_drain(jobs, 1, "normal", False, 0, "async")
        figures.update(await _scripts(url, jobs))
        await flush.flushall()
        await flush.aclose()
        figures["ping_us"] = await _ping(url)
        return figures

    return anyio.run(run)


ROWS = (
    ("redis_us", "Redis: µs a job, concurrency-1 drain", ".1f"),
    ("sqlite_us", "SQLite: µs a job, the same drain", ".1f"),
    ("evalsha_per_job", "Redis: script calls a job", ".2f"),
    ("reserve_us", "Redis: µs in the reserve script a call (SLOWLOG, median)", ".1f"),
    ("settle_us", "Redis: µs in the settle script a call (SLOWLOG, median)", ".1f"),
    ("ping_us", "a bare PING round trip, µs", ".1f"),
)


def _drain_in(tree: Path | None, url: str, jobs: int) -> float:
    """µs a job of one Redis drain in a fresh process importing taskit from ``tree`` (None:
    this tree), on a flushed server."""
    return float(run_child("benchmarks.redis_c1", tree, url, str(jobs))[-1])


def _child(url: str, jobs: int) -> None:
    import taskit

    async def run() -> float:
        flush = Redis.from_url(url)
        await flush.flushall()
        await flush.aclose()
        return await _drain(url, jobs)

    print(taskit.__file__)
    print(anyio.run(run))


def _versus(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="taskit-base-") as scratch, redis_server() as url:
        sha = base_tree(args.base, Path(scratch))
        trees: dict[str, Path | None] = {"this tree": None, f"base ({sha})": Path(scratch)}
        runs: dict[str, list[float]] = {label: [] for label in trees}
        for n in range(args.runs):
            order = list(trees.items()) if n % 2 == 0 else list(reversed(trees.items()))
            for label, tree in order:
                runs[label].append(_drain_in(tree, url, args.jobs))
                print(n, label, runs[label][-1], flush=True)
    mine, base = runs["this tree"], runs[f"base ({sha})"]
    ratio = statistics.median(m / b for m, b in zip(mine, base, strict=True))
    lines = ["| tree | µs a job (median) | runs |", "|---|---|---|"]
    for label, values in runs.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        lines.append(f"| {label} | {statistics.median(values):.1f} | {shown} |")
    lines.append(f"| this / base (median of the rounds' ratios) | {ratio:.2f} | |")
    _write(f"-versus-{sha}", f", this tree beside {sha}", lines, runs, args,
           "a private redis-server, flushed before each drain; `async def` no-op jobs")  # fmt: skip


def _write(
    suffix: str, title: str, lines: list[str], data: object, args: argparse.Namespace,
    setup: str,
) -> None:  # fmt: skip
    """The table ``lines`` to ``results/redis-c1-<date><suffix>[-TAG].md``, the figures
    ``data`` to the ``.json`` beside it, with the command, machine and versions."""
    stamp = datetime.now(UTC)
    name = f"redis-c1-{stamp:%Y-%m-%d}{suffix}" + (f"-{args.tag}" if args.tag else "")
    base = f" --base {args.base}" if args.base else ""
    head = (
        f"# A concurrency-1 drain on Redis{title} ({stamp:%Y-%m-%d %H:%M} UTC)\n\n"
        f"`python -m benchmarks.redis_c1{base} --runs {args.runs} --jobs {args.jobs}`; "
        f"{machine_line()}; {package_versions(('redis', 'anyio'))}; {setup}.\n\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(head + "\n".join(lines) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"runs": data, "args": vars(args)}, indent=1))
    print("\n".join(lines))
    print(f"wrote {RESULTS / name}.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=3000, help="a multiple of 500")
    parser.add_argument("--base", help="an earlier commit to set beside this tree")
    parser.add_argument("--tag", default="")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return
    if args.base:
        _versus(args)
        return
    runs = []
    with redis_server() as url:
        for n in range(args.runs):
            runs.append(one_run(url, args.jobs))
            print(n, runs[-1], flush=True)
    lines = ["| figure | median | runs |", "|---|---|---|"]
    for key, title, fmt in ROWS:
        values = [run[key] for run in runs]
        shown = ", ".join(f"{v:{fmt}}" for v in values)
        lines.append(f"| {title} | {statistics.median(values):{fmt}} | {shown} |")
    ratio = statistics.median(run["redis_us"] / run["sqlite_us"] for run in runs)
    lines.append(f"| Redis / SQLite, µs a job (median of the runs' ratios) | {ratio:.2f} | |")
    _write("", "", lines, runs, args, "a private redis-server")


if __name__ == "__main__":
    main()
