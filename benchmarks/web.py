"""Real web traffic: a POST that enqueues one job, under wrk, with a worker draining.

    benchmarks/.venv-peers/bin/python -m benchmarks.web --quick     # < 3 minutes, one round
    benchmarks/.venv-peers/bin/python -m benchmarks.web             # 3 rounds of 8 s, < 20 min

Per system, its app (``benchmarks/peers/webapps/``): FastAPI under uvicorn for taskit, arq, SAQ
and taskiq (async enqueues, async jobs); Flask under gunicorn (gthread, 8 threads) for taskit
(``enqueue_sync``), Celery, RQ, Dramatiq and Huey (plain-function jobs); each with 1 and 4 web
processes and one worker process (as ``benchmarks/README.md`` says each is run) draining at the
same time. ``wrk -t2 -c64`` warms up, the worker catches up, then ``wrk`` runs for the timed
span; the runner then waits until the worker has run every job the web tier enqueued and checks
the counts: jobs enqueued (a byte per request, from every web process) = jobs run (a line per
job, from every worker process), enqueued - wrk's 2xx between 0 and 64 (requests in flight when
wrk stops), no non-2xx and no socket errors; any other outcome is printed and reported as a
MISMATCH. Rounds take turns over every (processes, system); medians over rounds, and the ratio
taskit / best peer within each round, then its median. Also the worker's CPU per job (its whole
process tree, over the timed span and the drain). Writes ``benchmarks/results/web-<date>[-quick]``
``.md``, ``.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from benchmarks._proctree import session_cpu
from benchmarks._server import free_port, redis_server
from benchmarks._workers import ROOT, WorkerGroup
from benchmarks.peers import ASYNC_SYSTEMS, SYNC_SYSTEMS, load
from benchmarks.web_report import write

__all__ = ["Round", "main"]

APPS = "benchmarks.peers.webapps"
CONNECTIONS = 64
#: Jobs in flight at most when wrk stops: one request per connection.
IN_FLIGHT = CONNECTIONS
#: At most this many seconds for the worker to catch up after the warm-up (RQ's cannot).
WARM_CATCH_UP = 10.0
#: Seconds a count must hold still to be read as final.
SETTLE = 0.3
_ids = itertools.count()
#: ``--floor``'s system: a Flask app that only counts the request (no enqueue, no worker).
FLOOR = "floor"


@dataclass
class Round:
    """One measurement of one system on one stack at one process count."""

    system: str
    stack: str  # "asgi" or "wsgi"
    procs: int
    index: int = 0  # which round
    rps: float = 0.0
    wrk_requests: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    enqueued: int = 0
    ran: int = 0
    drain_s: float = 0.0
    worker_cpu_us: float | None = None
    web_cpu_us: float | None = None  # the web server's process tree, per request
    redis_cpu_us: float | None = None  # redis-server's (``INFO``), per job
    problems: list[str] = field(default_factory=list)


def server_argv(system: str, stack: str, procs: int, port: int) -> list[str]:
    """uvicorn or gunicorn for the system's app, ``procs`` web processes, no access log."""
    if stack == "asgi":
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            f"{APPS}.{system}_asgi:api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        return argv + (["--workers", str(procs)] if procs > 1 else [])
    return [
        sys.executable,
        "-m",
        "gunicorn",
        f"{APPS}.{system}_wsgi:web",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(procs),
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--log-level",
        "warning",
        "--config",
        str(ROOT / "benchmarks/peers/webapps/gunicorn_conf.py"),
    ]


def wrk(url: str, seconds: float) -> tuple[float, int, int, int]:
    """Run wrk; (requests/s, requests, non-2xx, socket errors)."""
    script = ROOT / "benchmarks/peers/webapps/post.lua"
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return rps, requests, int(non[1]) if non else 0, sum(map(int, errors.groups())) if errors else 0


def _count(path: Path, lines: bool) -> int:
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n") if lines else path.stat().st_size


def _post(url: str) -> bool:
    try:
        request = urllib.request.Request(url, data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=2) as reply:
            return bool(200 <= reply.status < 300)
    except OSError:
        return False


class Stage:
    """The worker and web server of one round, and the files that count their jobs."""

    def __init__(self, system: str, stack: str, procs: int, url: str, scratch: Path) -> None:
        self.web_file, self.job_file = scratch / "enqueued", scratch / "ran"
        if system == FLOOR:  # no jobs: a worker that only waits (the runner counts none)
            worker = [sys.executable, "-c", "import time; time.sleep(3600)"]
        else:
            cls = load(system)
            if isinstance(cls, str):
                raise SystemExit(f"{system}: {cls}")
            worker = cls(url).worker_command()
        self.counts_jobs = system != FLOOR
        self.worker = WorkerGroup(worker, f"web-{system}-{next(_ids)}", url, "none")
        self.worker.env["BENCH_JOB_FILE"] = str(self.job_file)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/jobs"
        env = {**self.worker.env, "BENCH_WEB_FILE": str(self.web_file)}
        self.argv, self.env = server_argv(system, stack, procs, port), env
        self.server: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.worker.start()
        self.server = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _post(self.url):
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"web server did not start: {' '.join(self.argv)}")
            time.sleep(0.1)

    async def drained(self, timeout: float) -> tuple[int, int, float]:
        """Wait until the web tier's count holds still (requests wrk left in flight have ended)
        and the worker ran every job enqueued; (enqueued, ran, seconds waited)."""
        began = time.monotonic()
        enqueued, still_since = -1, began
        while time.monotonic() - began < timeout:
            now, count = time.monotonic(), _count(self.web_file, False)
            if count != enqueued:
                enqueued, still_since = count, now
            ran = _count(self.job_file, True) if self.counts_jobs else enqueued
            if now - still_since >= SETTLE and ran >= enqueued:
                break
            self.worker.check_alive()
            await asyncio.sleep(0.01)
        await asyncio.sleep(SETTLE)  # a job run twice would show by now
        enqueued = _count(self.web_file, False)
        ran = _count(self.job_file, True) if self.counts_jobs else enqueued
        return enqueued, ran, time.monotonic() - began

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
        self.worker.stop()


async def redis_cpu(client: Redis) -> float:
    """redis-server's CPU seconds so far (user + system, every thread), from ``INFO cpu``."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_now(stage: Stage) -> tuple[float, float]:
    """(the worker's, the web server's) process trees' CPU seconds so far."""
    assert stage.server is not None
    return session_cpu(stage.worker.procs[0].pid), session_cpu(stage.server.pid)


async def measure(r: Round, url: str, warm: float, seconds: float, drain_cap: float) -> Round:
    client = Redis.from_url(url)
    await client.flushall()
    with tempfile.TemporaryDirectory() as scratch:
        stage = Stage(r.system, r.stack, r.procs, url, Path(scratch))
        try:
            stage.start()
            wrk(stage.url, warm)
            before, ran, _ = await stage.drained(min(drain_cap, WARM_CATCH_UP))
            if ran != before:
                r.problems.append(f"warm-up: {ran} of {before} jobs ran")
            cpu0, redis0 = cpu_now(stage), await redis_cpu(client)
            r.rps, r.wrk_requests, r.non_2xx, r.socket_errors = wrk(stage.url, seconds)
            enqueued, ran, r.drain_s = await stage.drained(drain_cap)
            cpu1, redis1 = cpu_now(stage), await redis_cpu(client)
        finally:
            stage.stop()
            await client.aclose()
    r.enqueued, r.ran = enqueued - before, ran - before
    if r.enqueued:
        per = 1e6 / r.enqueued
        if stage.counts_jobs:
            r.worker_cpu_us = (cpu1[0] - cpu0[0]) * per
        r.web_cpu_us, r.redis_cpu_us = (cpu1[1] - cpu0[1]) * per, (redis1 - redis0) * per
    check(r)
    return r


def check(r: Round) -> None:
    """Every request's job enqueued and run exactly once, or say what differs."""
    ok_2xx = r.wrk_requests - r.non_2xx
    if r.ran != r.enqueued:
        r.problems.append(f"{r.enqueued} jobs enqueued, {r.ran} ran (waited {r.drain_s:.0f} s)")
    if not ok_2xx <= r.enqueued <= ok_2xx + IN_FLIGHT:
        r.problems.append(f"wrk counted {ok_2xx} 2xx, the web tier enqueued {r.enqueued}")
    if r.non_2xx or r.socket_errors:
        r.problems.append(f"{r.non_2xx} non-2xx responses, {r.socket_errors} socket errors")


async def main(args: argparse.Namespace) -> int:
    stacks = [("asgi", s) for s in ASYNC_SYSTEMS] + [("wsgi", s) for s in SYNC_SYSTEMS]
    if args.system:
        stacks = [(st, s) for st, s in stacks if s in args.system]
    if args.stack:
        stacks = [(st, s) for st, s in stacks if st in args.stack]
    if args.floor:
        stacks.append(("wsgi", FLOOR))
    rounds: list[Round] = []
    began = time.monotonic()
    with redis_server(port=args.redis_port) as url:
        for i in range(args.rounds):
            for procs in args.procs:
                for stack, system in stacks:
                    r = await measure(
                        Round(system, stack, procs, i), url, args.warm, args.seconds, args.drain_cap
                    )
                    rounds.append(r)
                    flag = "  MISMATCH: " + "; ".join(r.problems) if r.problems else ""
                    print(
                        f"round {i + 1} {stack} {procs}p {system:9} {r.rps:8,.0f} req/s "
                        f"{r.enqueued:7,} jobs, drained +{r.drain_s:4.1f} s{flag}",
                        flush=True,
                    )
        table = write(args, rounds, url, time.monotonic() - began)
    print(table)
    return 1 if any(r.problems for r in rounds) else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s")
    parser.add_argument("--rounds", type=int, help="default 3 (quick 1)")
    parser.add_argument("--seconds", type=float, help="timed wrk span; default 8 (quick 3)")
    parser.add_argument("--warm", type=float, help="wrk warm-up; default 2 (quick 1)")
    parser.add_argument("--procs", type=int, action="append", help="web processes; default 1, 4")
    parser.add_argument(
        "--drain-cap",
        type=float,
        help="seconds to wait for the worker after wrk; default 30 (quick 8)",
    )
    parser.add_argument("--system", action="append", help="repeatable; default all")
    parser.add_argument(
        "--stack",
        action="append",
        choices=["asgi", "wsgi"],
        help="repeatable: asgi (FastAPI + uvicorn), wsgi (Flask + gunicorn); default both",
    )
    parser.add_argument(
        "--redis-port",
        type=int,
        default=0,
        help="private redis-server port; default: a free one",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--floor",
        action="store_true",
        help="add a Flask app that enqueues nothing (the web tier's own ceiling), no worker",
    )
    parser.add_argument("--tag", default="", help="results file web-<date>[-quick]-<tag>.*")
    parser.add_argument(
        "--taskit-loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="taskit worker's --loop (auto: uvloop when installed)",
    )
    args = parser.parse_args(argv)
    os.environ["BENCH_TASKIT_LOOP"] = args.taskit_loop
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (3.0 if args.quick else 8.0)
    args.warm = args.warm or (1.0 if args.quick else 2.0)
    args.procs = args.procs or [1, 4]
    args.drain_cap = args.drain_cap or (8.0 if args.quick else 30.0)
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
