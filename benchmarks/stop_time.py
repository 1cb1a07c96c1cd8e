"""How long a `taskit worker` takes to stop on SIGTERM, on every event loop and broker state.

Starts real worker processes of ``tests.apps.stop_app:app`` (concurrency 4) and, for Redis, its
own ``redis-server`` on a free port. Each scenario runs ``--runs`` times (default 5); the table
gives the median, and the range in brackets, of:

* **signal → stopped**: SIGTERM to the worker's ``stopped`` log line (its shutdown is done);
* **signal → exit**: SIGTERM to the process's exit (adds the interpreter's own teardown);
* **signal → release**: SIGTERM to the log line of the running job handed back to the queue
  (scenarios with a job: a 30 s job and a grace period of 0.2 s, so this should read ~200 ms;
  with Redis killed or paused nothing takes the hand-back: the worker gives it up one second
  after the grace period, and the job's lease expires).

Scenarios without a loop in their name run on asyncio. Broker states: memory; Redis up; Redis
unreachable (a port nothing listens on); a read-only replica (``--replicaof`` a dead port); Redis
killed after the worker connected; Redis paused (SIGSTOP) under an idle worker.
Writes ``benchmarks/results/stop-time-<date>.md``.

    .venv/bin/python -m benchmarks.stop_time [--runs 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis

from benchmarks._machine import machine_line, package_versions
from benchmarks._server import free_port, redis_server

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
APP = "tests.apps.stop_app:app"
GRACE = 0.2
#: Broker states in which a running job cannot be handed back (the worker gives it up).
GONE = ("killed", "paused")
#: A run that has not exited by then is killed and reported as a failure.
WATCHDOG = 60.0


@dataclass(frozen=True)
class Scenario:
    name: str
    broker: str  # memory, up, unreachable, replica, killed, paused
    loop: str
    job: bool = False
    extra: tuple[str, ...] = ()  # more worker options


@dataclass
class Figures:
    stopped: list[float] = field(default_factory=list)
    exited: list[float] = field(default_factory=list)
    released: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Worker:
    """One `taskit worker` process; its stderr lines with the time each was read."""

    def __init__(
        self, env: dict[str, str], loop: str, *extra: str, app: str = APP, where: Path = ROOT,
        pythonpath: str = str(ROOT),
    ) -> None:  # fmt: skip
        """``where``: the working directory; ``pythonpath``: its ``PYTHONPATH`` (the taskit
        and benchmarks it runs; ``benchmarks.overhead.Tree``)."""
        self.lines: list[str] = []
        self._seen = threading.Condition()
        # DEBUG: the job's start line ("attempt 1 started") is logged at DEBUG
        argv = [sys.executable, "-m", "taskit", "worker", app, "-c", "4", "--loop", loop]
        self.proc = subprocess.Popen(
            [*argv, "--log-level", "DEBUG", *extra],
            cwd=where,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                found = next((line for line in self.lines if text in line), None)
                if found is not None:
                    return found
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"no {text!r} in the worker's log:\n{''.join(self.lines)}")
                self._seen.wait(0.1)

    def stop(self) -> tuple[float, float]:
        """SIGTERM; (wall-clock time of the signal, seconds until the process exited)."""
        watchdog = threading.Timer(WATCHDOG, self.proc.kill)
        watchdog.start()
        try:
            at, began = time.time(), time.perf_counter()
            self.proc.send_signal(signal.SIGTERM)
            os.waitpid(self.proc.pid, 0)  # blocking: exact, where Popen.wait(timeout) polls
            took = time.perf_counter() - began
        finally:
            watchdog.cancel()
        self.proc.returncode = 0  # reaped above; keeps Popen from waiting again
        return at, took


def log_time(line: str) -> float:
    """The wall-clock time of a CLI log line (``2026-11-30 10:00:00,123 ...``, local time)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def in_blpop(url: str) -> Callable[[], bool]:
    def check() -> bool:
        client = redis.Redis.from_url(url)
        try:
            return any(c.get("cmd") == "blpop" for c in client.client_list())
        finally:
            client.close()

    return check


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("the worker never went idle")
        time.sleep(0.02)


@contextmanager
def broker_url(state: str) -> Iterator[str]:
    """The broker URL of a run in ``state`` (a fresh server for each run)."""
    if state == "memory":
        yield "memory://"
    elif state == "unreachable":
        yield f"redis://127.0.0.1:{free_port()}/0"
    elif state == "replica":
        with redis_server("--replicaof", "127.0.0.1", str(free_port())) as url:
            yield url
    else:
        with redis_server() as url:
            yield url


def one_run(scenario: Scenario, figures: Figures) -> None:
    with broker_url(scenario.broker) as url:
        env = {"TASKIT_BROKER_URL": url, "TASKIT_GRACE_PERIOD": str(GRACE)}
        if scenario.job:
            env["STOP_SEED"] = "30"
        extra = [a.replace("PORT", str(free_port())) for a in scenario.extra]
        worker = Worker(env, scenario.loop, *extra)
        server_pid = None
        try:
            worker.wait_for("starting: queues=")
            if scenario.job:
                worker.wait_for("attempt 1 started")
            elif scenario.broker in ("up", "replica", "killed", "paused"):
                wait_until(in_blpop(url))  # asleep in its wait: what a stop must cut short
            else:
                time.sleep(0.5)  # memory: asleep in its wait; unreachable: backing off
            if scenario.broker in ("killed", "paused"):
                server_pid = int(redis.Redis.from_url(url).info("server")["process_id"])
                os.kill(server_pid, signal.SIGKILL if scenario.broker == "killed" else SIGSTOP)
            at, took = worker.stop()
        finally:
            if server_pid is not None and scenario.broker == "paused":
                os.kill(server_pid, signal.SIGCONT)
            if worker.proc.poll() is None:
                worker.proc.kill()
    stopped = next((line for line in worker.lines if " stopped: " in line), None)
    if stopped is None:
        figures.failures.append(f"no 'stopped' line:\n{''.join(worker.lines[-5:])}")
        return
    figures.exited.append(took)
    figures.stopped.append(log_time(stopped) - at)
    if scenario.job and scenario.broker not in GONE:  # nothing can take the hand-back there
        release = next((line for line in worker.lines if "(stop.sleep) release in" in line), None)
        if release is None:
            figures.failures.append("the running job was not handed back")
        else:
            figures.released.append(log_time(release) - at)


SIGSTOP = signal.SIGSTOP


def scenarios() -> list[Scenario]:
    loops = ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") else ["asyncio"]
    out = [Scenario(f"memory, {loop}, idle", "memory", loop) for loop in [*loops, "trio"]]
    out += [Scenario(f"memory, {loop}, a running job, grace 0.2 s", "memory", loop, True)
            for loop in [*loops, "trio"]]  # fmt: skip
    if importlib.util.find_spec("prometheus_client"):
        metrics = ("--metrics-port", "PORT", "--scheduler")
        out.append(Scenario("memory, --metrics-port and --scheduler, idle", "memory", "asyncio",
                            extra=metrics))  # fmt: skip
    out += [Scenario(f"Redis up, {loop}, idle", "up", loop) for loop in loops]
    out += [Scenario(f"Redis up, {loop}, a running job, grace 0.2 s", "up", loop, True)
            for loop in loops]  # fmt: skip
    out += [
        Scenario("Redis unreachable (no server on the port), idle", "unreachable", "asyncio"),
        Scenario("Redis read-only replica, idle", "replica", "asyncio"),
        Scenario("Redis killed under the worker, idle", "killed", "asyncio"),
        Scenario("Redis killed under a running job, grace 0.2 s", "killed", "asyncio", True),
        Scenario("Redis paused (SIGSTOP), idle", "paused", "asyncio"),
        Scenario("Redis paused under a running job, grace 0.2 s", "paused", "asyncio", True),
    ]
    return out


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    median = statistics.median(values) * 1000
    return f"{median:.0f} ({min(values) * 1000:.0f} to {max(values) * 1000:.0f})"


def versions() -> str:
    try:
        server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        redis_server = server.stdout.split("v=")[1].split()[0]
    except (OSError, IndexError):
        redis_server = "unknown"
    found = package_versions(("taskit", "redis", "hiredis", "anyio", "uvloop", "trio"))
    found["redis-server"] = redis_server
    return ", ".join(f"{name} {number}" for name, number in found.items())


def main(runs: int) -> str:
    results: dict[Scenario, Figures] = {}
    for scenario in scenarios():
        figures = results[scenario] = Figures()
        for _ in range(runs):
            try:
                one_run(scenario, figures)
            except RuntimeError as exc:  # a run that never got where it is measured from
                figures.failures.append(str(exc).splitlines()[0])
        print(f"  {scenario.name}: exit {ms(figures.exited)} ms", flush=True)
    when = datetime.now(UTC)
    lines = [
        f"# Stopping a worker on SIGTERM, {when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        f"Versions: {versions()}.",
        f"Median of {runs} runs, range in brackets, milliseconds. `taskit worker "
        f"{APP} -c 4 --loop LOOP`; grace period {GRACE} s; the job sleeps 30 s. "
        "Command: `python -m benchmarks.stop_time" + (f" --runs {runs}`." if runs != 5 else "`."),
        "",
        "| scenario | signal → stopped | signal → exit | signal → release |",
        "|---|---:|---:|---:|",
    ]
    for scenario, figures in results.items():
        lines.append(
            f"| {scenario.name} | {ms(figures.stopped)} | {ms(figures.exited)} | "
            f"{ms(figures.released) if scenario.job and scenario.broker not in GONE else '-'} |"
        )
    failures = [(s.name, f) for s, fig in results.items() for f in fig.failures]
    if failures:
        lines += ["", "Runs that failed:", ""] + [f"- {name}: {why}" for name, why in failures]
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"stop-time-{when:%Y-%m-%d}.md").write_text(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (median)")
    print(main(parser.parse_args().runs))
