"""Where one job's microseconds go: a worker drains no-op jobs under cProfile.

Starts its own redis-server (or uses the memory broker), queues ``--jobs`` no-op async jobs
(``--sync``: ``def`` jobs, run in threads), and drains them with one in-process worker under
``cProfile``, logging as ``taskit worker --log-level LEVEL`` does (``--log-level``, default INFO,
the CLI's default; the lines go to a temporary file). Prints the functions that cost the most
*own* CPU time, as microseconds per job, and the total. cProfile slows everything down (roughly
2x): read the table as proportions, not as absolute costs.

    .venv/bin/python -m benchmarks.profile_worker [--broker redis|memory] [--jobs 20000]
        [--sync] [--log-level INFO|WARNING] [--loop asyncio|uvloop] [--by-area]

``--by-area``: also the share of own time by where each function lives (the worker's own
Python, the Redis broker, anyio, asyncio, logging, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import logging
import pstats
import tempfile
import time
from collections.abc import Callable

import anyio

from benchmarks._server import redis_server
from taskit import App, Settings
from taskit.cli import _configure_logging


def build(url: str, concurrency: int) -> App:
    app = App(url, settings=Settings(concurrency=concurrency))

    @app.task(name="bench.noop")
    async def noop() -> None:
        return None

    @app.task(name="bench.noop_sync")
    def noop_sync() -> None:
        return None

    return app


async def drain(app: App, jobs: int, name: str) -> tuple[pstats.Stats, float, int]:
    noop = app.get_task(name)
    for start in range(0, jobs, 1000):
        await app.enqueue_many([noop.prepare() for _ in range(min(1000, jobs - start))])
    profile = cProfile.Profile(time.process_time)  # CPU time: waiting on Redis is not counted
    cpu = time.process_time()
    profile.enable()
    stats = await app.worker().run(burst=True)
    profile.disable()
    cpu = time.process_time() - cpu
    await app.close()
    return pstats.Stats(profile), cpu, stats.completed


def report(stats: pstats.Stats, cpu: float, done: int, top: int) -> str:
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    lines = [
        f"{done} jobs, {cpu / done * 1e6:.0f} us CPU per job under cProfile",
        "",
        "| own us/job | calls/job | function |",
        "|---:|---:|---|",
    ]
    for (path, line, name), (_cc, calls, own, _cum, _callers) in rows:
        where = path.rsplit("site-packages/", 1)[-1].rsplit("/work/main/", 1)[-1]
        lines.append(f"| {own / done * 1e6:.1f} | {calls / done:.2f} | `{name}` {where}:{line} |")
    return "\n".join(lines)


#: Areas of ``--by-area``: the first whose test a function passes (its file path, its name).
_AREAS: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("logging (the line, the ledger)",
     lambda p, n: "_logline" in p or "_ledger" in p or "/logging/" in p),
    ("outcome checks (_storable)", lambda p, n: "_storable" in p),
    ("Redis broker (requests, replies, records, transport)",
     lambda p, n: "/taskit/broker/" in p),
    ("job structs, arguments", lambda p, n: any(
        f in p for f in ("/taskit/job.py", "/taskit/_values.py", "/taskit/task.py",
                         "/taskit/_arguments")) or (p == "~" and "msgspec" in n)),
    ("worker, executor, settler, hand-off (own Python)", lambda p, n: "/taskit/" in p),
    ("anyio (cancel scopes, events, clock)", lambda p, n: "anyio" in p or "sniffio" in p),
    ("asyncio loop, sockets", lambda p, n: "asyncio" in p or "selectors" in p or (
        p == "~" and any(w in n for w in ("socket", "hiredis", "select", "epoll", "_asyncio",
                                          "Context", "Future", "Task")))),
    ("builtins (isinstance, len, clocks, dict methods)", lambda p, n: p == "~"),
)  # fmt: skip


def by_area(stats: pstats.Stats) -> str:
    """The share of own time in each of ``_AREAS`` (``other``: none of them)."""
    shares: dict[str, float] = {}
    for (path, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        area = next((a for a, test in _AREAS if test(path, name)), "other")
        shares[area] = shares.get(area, 0.0) + row[2]
    total = sum(shares.values())
    rows = sorted(shares.items(), key=lambda item: -item[1])
    return "\n".join(["| area | own time |", "|---|---:|"]
                     + [f"| {area} | {own / total:.0%} |" for area, own in rows])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "memory"], default="redis")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--sync", action="store_true", help="def jobs (run in threads)")
    parser.add_argument("--log-level", default="INFO", choices=["INFO", "WARNING"])
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--by-area", action="store_true", help="also the share of each area")
    options = parser.parse_args()
    name = "bench.noop_sync" if options.sync else "bench.noop"
    backend = {"use_uvloop": options.loop == "uvloop"}
    with tempfile.NamedTemporaryFile("w", suffix=".log") as log, contextlib.ExitStack() as stack:
        _configure_logging(options.log_level)
        logging.getLogger().handlers[0].setStream(log)  # type: ignore[attr-defined]
        url = "memory://" if options.broker == "memory" else stack.enter_context(redis_server())
        app = build(url, options.concurrency)
        result = anyio.run(drain, app, options.jobs, name, backend_options=backend)
    print(report(*result, options.top))
    if options.by_area:
        print()
        print(by_area(result[0]))


if __name__ == "__main__":
    main()
