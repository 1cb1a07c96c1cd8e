"""What TLS costs the producer's fast paths (issue 17): plain ``redis://`` beside ``rediss://``.

Starts two private ``redis-server`` processes, one plain and one TLS-only (its CA and
certificates made with ``openssl``, as the TLS tests make them: ``tests.broker._tls``), and
times, on each, ``--jobs`` (3,000) enqueues of a no-op job by the public API:

* **enqueue_sync**: ``task.enqueue_sync()`` from one thread (the blocking client);
* **enqueue_sync, a thread each**: the same, each call from a new thread, as a web server that
  starts a thread per request (the pooled blocking connection; before it, a connect and a TLS
  handshake per call);
* **enqueue**: ``await task.enqueue()`` one at a time on asyncio (the fast transport).

Each figure is the median (range in brackets) of ``--runs`` (5) runs, with the producer's own
CPU per call (``time.process_time``) and Redis's (``INFO`` ``used_cpu_*``). Writes
``benchmarks/results/tls-<date>.md``.

    .venv/bin/python -m benchmarks.tls [--runs 5] [--jobs 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from benchmarks._machine import machine_line, package_versions
from benchmarks._server import redis_server
from taskit import App, Task
from tests.broker._tls import tls_redis

RESULTS = Path(__file__).parent / "results"
WARMUP = 200


@dataclass(frozen=True)
class Run:
    rate: float  # calls per second
    client_us: float  # producer CPU per call
    server_us: float  # Redis CPU per call


def _server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _noop_app(url: str) -> tuple[App, Task[..., Any]]:
    app = App(url)

    @app.task(name="noop")
    async def noop() -> None: ...

    return app, noop


def _timed(client: redis.Redis, jobs: int, body: Callable[[], None]) -> Run:
    server, cpu, began = _server_cpu(client), time.process_time(), time.perf_counter()
    body()
    wall = time.perf_counter() - began
    return Run(
        rate=jobs / wall,
        client_us=(time.process_time() - cpu) / jobs * 1e6,
        server_us=(_server_cpu(client) - server) / jobs * 1e6,
    )


def sync_one_thread(url: str, client: redis.Redis, jobs: int) -> Run:
    app, noop = _noop_app(url)
    try:
        for _ in range(WARMUP):
            noop.enqueue_sync()

        def body() -> None:
            for _ in range(jobs):
                noop.enqueue_sync()

        return _timed(client, jobs, body)
    finally:
        app.close_sync()


def sync_thread_each(url: str, client: redis.Redis, jobs: int) -> Run:
    app, noop = _noop_app(url)
    try:
        noop.enqueue_sync()

        def body() -> None:
            for _ in range(jobs):
                thread = threading.Thread(target=noop.enqueue_sync)
                thread.start()
                thread.join()

        return _timed(client, jobs, body)
    finally:
        app.close_sync()


def async_single(url: str, client: redis.Redis, jobs: int) -> Run:
    async def main() -> Run:
        app, noop = _noop_app(url)
        try:
            for _ in range(WARMUP):
                await noop.enqueue()
            server, cpu, began = _server_cpu(client), time.process_time(), time.perf_counter()
            for _ in range(jobs):
                await noop.enqueue()
            wall = time.perf_counter() - began
            return Run(jobs / wall, (time.process_time() - cpu) / jobs * 1e6,
                       (_server_cpu(client) - server) / jobs * 1e6)  # fmt: skip
        finally:
            await app.close()

    return asyncio.run(main())


SCENARIOS: dict[str, Callable[[str, redis.Redis, int], Run]] = {
    "enqueue_sync": sync_one_thread,
    "enqueue_sync, a thread each": sync_thread_each,
    "enqueue (async)": async_single,
}


def _median(runs: list[Run], field: str) -> str:
    values = [getattr(r, field) for r in runs]
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=3000)
    opts = parser.parse_args()
    results: dict[tuple[str, str], list[Run]] = {}
    with tempfile.TemporaryDirectory() as tmp, tls_redis(Path(tmp)) as tls, \
            redis_server() as plain_url:  # fmt: skip
        urls = {"plain": plain_url, "tls": tls.url()}
        clients = {
            "plain": redis.Redis.from_url(plain_url),
            "tls": redis.Redis.from_url(tls.url()),
        }
        for _ in range(opts.runs):  # interleaved: a busy moment on the machine hits both
            for scenario, measure in SCENARIOS.items():
                for kind in ("plain", "tls"):
                    got = measure(urls[kind], clients[kind], opts.jobs)
                    results.setdefault((scenario, kind), []).append(got)
                    print(f"{scenario:28} {kind:5} {got.rate:8,.0f}/s", flush=True)
        for client in clients.values():
            client.close()
    when = datetime.now(UTC)
    versions = package_versions(("taskit", "redis", "hiredis"))
    lines = [
        f"# TLS on the fast paths ({when:%Y-%m-%d})",
        "",
        f"`python -m benchmarks.tls --runs {opts.runs} --jobs {opts.jobs}`: a no-op job enqueued "
        f"{opts.jobs:,} times per run; median [range] of {opts.runs} runs. Calls/s, and CPU "
        "per call (µs) of the producer and of Redis. Plain and TLS runs interleaved.",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "| path | plain calls/s | TLS calls/s | TLS / plain | producer µs plain / TLS "
        "| Redis µs plain / TLS |",
        "|---|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        plain, tls_runs = results[(scenario, "plain")], results[(scenario, "tls")]
        ratio = statistics.median(r.rate for r in plain) / statistics.median(
            r.rate for r in tls_runs
        )
        lines.append(
            f"| {scenario} | {_median(plain, 'rate')} | {_median(tls_runs, 'rate')} "
            f"| {ratio:.2f}x slower | {_median(plain, 'client_us')} / "
            f"{_median(tls_runs, 'client_us')} | {_median(plain, 'server_us')} / "
            f"{_median(tls_runs, 'server_us')} |"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"tls-{when:%Y-%m-%d}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
