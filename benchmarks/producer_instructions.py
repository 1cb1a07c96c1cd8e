"""The producer's Python per enqueue as instruction counts (issue 19): steady on a busy machine.

Timings of a few microseconds mean little on a machine shared with other runs; instructions do
not move with the load. Each step below runs under ``valgrind --tool=callgrind`` twice, once
``--calls`` times after a warm-up and once with the warm-up alone; the difference over
``--calls`` is that step's user-space instructions per call (the kernel's share of a socket
write or read is not counted: ``producers.py`` has the CPU time). The steps, on a private
``redis-server``, for a no-op task with no options:

* **enqueue_sync**, **enqueue** (async, one coroutine): the whole call, round trip included;
* the same from 8 threads at once and from 64 coroutines on one loop, per job (``--calls``
  jobs in all; valgrind runs one thread at a time, each switching at a blocking call);
* **prepare**: building and checking the job (``task.prepare()``);
* **stored form**: what the Redis broker makes of it before the script call (``_Enqueue``:
  the checks, the spec bytes, checked to decode back);
* **request**: the script's KEYS and ARGV (``request``, ``keys``, ``args``);
* **pack**: the ``EVALSHA`` command as RESP bytes;
* **round trip**: that command on the blocking connection threads share (pack included; the
  same job each time, so the script answers that it keeps the one stored);
* **PING round trip**: a bare ``PING`` the same way, the floor of the transport.

With ``--versus REV`` the same steps are counted for taskit at git revision ``REV`` (a
temporary worktree, first on ``PYTHONPATH``) beside this tree, and the ratio given. Writes
``benchmarks/results/producer-instructions-<date>.md`` and ``.json``; docs/performance.md
quotes it.

    .venv/bin/python -m benchmarks.producer_instructions [--calls 1000] [--versus REV]
        [--only STEP ...] [--tag T]   (``--tag T``: ``-T`` ends the results file's name)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks._machine import machine_line, package_versions
from benchmarks._server import redis_server

RESULTS = Path(__file__).parent / "results"
WARMUP = 100

#: The set-up every step shares: an App on the server, a no-op task, one job and its request.
SETUP = """
import asyncio
from taskit import App
from taskit.broker.redis.broker import _Enqueue
from taskit.broker.redis.scripts import SCRIPTS
from taskit.broker.redis.transport.packing import pack
app = App(URL)
@app.task(name="noop")
async def noop() -> None: ...
noop.enqueue_sync()
broker = app.broker
job = noop.prepare()
jobs = [job]
call = _Enqueue(jobs, None, broker._ttl_ms)
request = call.request()
keys, args = request.keys(broker._keys), request.args()
command = ("EVALSHA", SCRIPTS._for(request.script, keys).sha, len(keys), *keys, *args)
shared = broker._conn.blocking()
shared = shared.__enter__() if hasattr(shared, "__enter__") else shared
async def enqueues(n):
    for _ in range(n):
        await noop.enqueue()
async def many(n, tasks):
    await asyncio.gather(*(enqueues(n // tasks) for _ in range(tasks)))
import threading
def threads(n, count):
    def work():
        for _ in range(n // count):
            noop.enqueue_sync()
    started = [threading.Thread(target=work) for _ in range(count)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
"""

#: Step name -> the statement run once per call (``n``: how many times, in ``asyncio.run``).
STEPS = {
    "enqueue_sync": "for _ in range(n): noop.enqueue_sync()",
    "enqueue (async)": "asyncio.run(enqueues(n))",
    "enqueue_sync, 8 threads (a job)": "threads(n, 8)",
    "enqueue (async), 64 coroutines (a job)": "asyncio.run(many(n, 64))",
    "prepare": "for _ in range(n): noop.prepare()",
    "stored form": "for _ in range(n): _Enqueue(jobs, None, broker._ttl_ms)",
    "request": "for _ in range(n): r = call.request(); r.keys(broker._keys); r.args()",
    "pack": "for _ in range(n): pack(command)",
    "round trip": "for _ in range(n): shared.execute(*command)",
    "PING round trip": "for _ in range(n): shared.execute('PING')",
}


def _instructions(tree: Path, url: str, step: str, calls: int) -> int:
    """User-space instructions of a process that runs ``step`` ``calls`` times (after the
    warm-up) with ``tree``'s taskit."""
    code = f"URL = {url!r}\n{SETUP}\nn = {WARMUP}\n{STEPS[step]}\nn = {calls}\n{STEPS[step]}\n"
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, "-c", code],
            env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree,
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind gave no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_call(tree: Path, url: str, step: str, calls: int) -> float:
    """Instructions per call of ``step``: ``calls`` of them, less the warm-up-only run."""
    return (_instructions(tree, url, step, calls) - _instructions(tree, url, step, 0)) / calls


def _measure(
    trees: dict[str, Path], url: str, calls: int, steps: list[str]
) -> dict[str, dict[str, float]]:
    counts: dict[str, dict[str, float]] = {name: {} for name in trees}
    for step in steps:
        for name, tree in trees.items():
            counts[name][step] = per_call(tree, url, step, calls)
            print(f"{step:18} {name:10} {counts[name][step]:10,.0f}", flush=True)
    return counts


def _report(counts: dict[str, dict[str, float]], calls: int, opts: argparse.Namespace) -> None:
    when = datetime.now(UTC)
    names = list(counts)
    versus = opts.versus
    flags = "".join(f" --only {step!r}" for step in opts.only or ())
    flags += f" --tag {opts.tag}" if opts.tag else ""
    lines = [
        f"# The producer's instructions per enqueue ({when:%Y-%m-%d})",
        "",
        f"`python -m benchmarks.producer_instructions --calls {calls}"
        + (f" --versus {versus}" if versus else "")
        + f"{flags}`"
        + ": user-space instructions per call (callgrind, the difference between a run of "
        f"{calls:,} calls and one without them), a no-op task with no options, on a private "
        "redis-server.",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in package_versions(("hiredis",)).items()),
        "",
        "| step | " + " | ".join(names) + (f" | {names[1]} / {names[0]}" if versus else "") + " |",
        "|---|" + "---|" * (len(names) + (1 if versus else 0)),
    ]
    for step in counts[names[0]]:
        row = [f"{counts[name][step]:,.0f}" for name in names]
        if versus:
            row.append(f"{counts[names[1]][step] / counts[names[0]][step]:.2f}")
        lines.append(f"| {step} | " + " | ".join(row) + " |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"producer-instructions-{when:%Y-%m-%d}{f'-{opts.tag}' if opts.tag else ''}"
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    record = {"date": when.isoformat(), "machine": machine_line(), "calls": calls,
              "counts": counts}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}.md and .json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--versus", metavar="REV", help="count taskit at REV beside this tree")
    parser.add_argument("--only", action="append", choices=list(STEPS), help="this step only")
    parser.add_argument("--tag", help="suffix of the results file's name (keeps others' files)")
    opts = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH")
    here = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(here)]
    trees = {"this tree": here}
    old: Path | None = None
    if opts.versus:
        sha = subprocess.run([*git, "rev-parse", "--short", opts.versus], check=True,
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
        old = Path(tempfile.mkdtemp()) / "old"
        subprocess.run([*git, "worktree", "add", "--detach", str(old), sha], check=True,
                       capture_output=True)  # fmt: skip
        trees = {sha: old, "this tree": here}
    try:
        with redis_server() as url:
            counts = _measure(trees, url, opts.calls, opts.only or list(STEPS))
    finally:
        if old is not None:
            subprocess.run([*git, "worktree", "remove", "--force", str(old)], check=False,
                           capture_output=True)  # fmt: skip
    _report(counts, opts.calls, opts)


if __name__ == "__main__":
    main()
