"""Redis's instructions per script call, this tree against another commit (issue 19, target 1).

CPU time on a shared 2-core machine moves by a factor of two between minutes; instruction
counts do not. For each tree (REV, checked out into a temporary git worktree, then this one)
this starts ``redis-server`` under ``valgrind --tool=callgrind`` on ``--port`` (6391 by default;
no persistence; stopped by its pid), counting only inside ``evalShaCommand`` (the script call,
the commands it runs included), and drives that tree's broker with ``benchmarks/_lua_drive.py``
(its phases: ``jobs`` single enqueues, reserves and settles of 10 a call, then of 1 a call as
when jobs trickle in one at a time, each reserve asking for 10 and finding one; one enqueue of
1,000).
Callgrind dumps after each phase; the table gives instructions per script call and per job, and
the ratio this tree / REV. Also ``EVALSHA`` of ``return 1`` with no key, one and 18 keys (what
any call costs, this Redis), and of loops of 100 of one operation (a command, a pattern match, a
table, a closure): what each costs inside a script; and of each hot script's includes followed by
``return 1``, whole and as pasted (``benchmarks.lua_includes``; the same texts for both trees).
Writes ``benchmarks/results/lua-instructions-<date>[-<tag>].md`` and ``.json``.

    .venv/bin/python -m benchmarks.lua_instructions REV [--jobs 300] [--port 6391] [--tag T]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

from benchmarks._lua_drive import PHASES, TRICKLE_PHASE
from benchmarks._machine import machine_line, package_versions
from benchmarks.lua_includes import variants

HERE = Path(__file__).resolve().parent.parent
RESULTS = HERE / "benchmarks" / "results"
DRIVER = HERE / "benchmarks" / "_lua_drive.py"
_STATE = "'^' .. string.rep('([^|]*)|', 10) .. '(.*)$'"  # _common.lua's STATE_PATTERN
#: Bare calls: (name, script, keys), each made BARE_CALLS times; the "100 x" ones, minus
#: "return 1, 1 key", over 100, give the cost of one operation inside a script.
BARE = (
    ("return 1, no key", "return 1", 0),
    ("return 1, 1 key", "return 1", 1),
    ("return 1, 18 keys", "return 1", 18),
    ("100 x HGET of a missing field", "for i = 1, 100 do redis.call('HGET', KEYS[1], 'f') end", 1),
    ("100 x (HSET + HDEL)", "for i = 1, 100 do redis.call('HSET', KEYS[1], 'f', 'v') "
     "redis.call('HDEL', KEYS[1], 'f') end", 1),
    ("100 x a record state's string.match", f"local p = {_STATE} for i = 1, 100 do "
     "string.match('pending|0|0||||||||default', p) end", 1),
    ("100 x a table of 5 fields", "for i = 1, 100 do local t = {a = 1, b = 2, c = 3, d = 4, "
     "e = i} end", 1),
    ("100 x a closure of 1 upvalue", "local r = redis.call for i = 1, 100 do "
     "local f = function() return r end end", 1),
    ("100 x TYPE", "for i = 1, 100 do redis.call('TYPE', KEYS[1]) end", 1),
    ("100 x LRANGE key 0 9 (numbers)", "for i = 1, 100 do redis.call('LRANGE', KEYS[1], 0, 9) "
     "end", 1),
    ("100 x LRANGE key '0' '9' (text)", "for i = 1, 100 do redis.call('LRANGE', KEYS[1], '0', "
     "'9') end", 1),
    ("100 x 'a' .. a ms timestamp", "local n = 1764700000123 local x for i = 1, 100 do "
     "x = 'a' .. n end", 1),
    ("100 x string.format('%d') of it", "local n = 1764700000123 local x for i = 1, 100 do "
     "x = string.format('%d', n) end", 1),
    ("100 x string.byte", "local x for i = 1, 100 do x = string.byte('hash') end", 1),
    ("100 x an addition", "local x = 0 for i = 1, 100 do x = x + i end", 1),
)  # fmt: skip
BARE_CALLS = 200
_TOTALS = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


def start(port: int, out: Path) -> subprocess.Popen[bytes]:
    """redis-server under callgrind, counting inside evalShaCommand only; waits until it answers."""
    argv = [
        "valgrind", "--tool=callgrind", "--collect-atstart=no",
        "--toggle-collect=evalShaCommand", f"--callgrind-out-file={out}/cg.%p",
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"redis-server exited: is port {port} taken?") from None
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server under valgrind did not start")


def dumps(out: Path, pid: int) -> list[int]:
    """The instruction totals of callgrind's numbered dumps of ``pid``, in order."""
    files = sorted(out.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))
    totals = []
    for path in files:
        found = _TOTALS.search(path.read_text())
        totals.append(int(found.group(1)) if found else 0)
    return totals


def bare() -> list[tuple[str, str, int]]:
    """``BARE``, then each hot script's includes whole and as pasted (``lua_includes``)."""
    preludes = [(name, text, 0) for name, text in variants().items() if "'s includes" in name]
    return [*BARE, *preludes]


def measure(tree: Path, port: int, jobs: int) -> dict[str, float]:
    """Instructions per script call of each phase (and the bare calls) for the taskit in
    ``tree``."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        proc = start(port, out)
        try:
            client = redis.Redis(port=port)
            for _, script, keys in bare():
                sha = client.script_load(script)
                client.evalsha(sha, keys, *[f"k{i}" for i in range(keys)])
                subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                               capture_output=True)  # fmt: skip
                for _ in range(BARE_CALLS):
                    client.evalsha(sha, keys, *[f"k{i}" for i in range(keys)])
                subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                               capture_output=True)  # fmt: skip
            client.close()
            env = {**os.environ, "PYTHONPATH": str(tree)}
            url = f"redis://127.0.0.1:{port}/0"
            used, trickled = subprocess.run(
                [sys.executable, str(DRIVER), url, str(proc.pid), str(jobs)],
                env=env, check=True, capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            if not used.startswith(str(tree)):
                raise SystemExit(f"the driver imported {used}, not the taskit of {tree}")
        finally:
            proc.terminate()
            proc.wait()
        totals = dumps(out, proc.pid)
    trickle = int(trickled)
    at = len(bare()) + [name for name, _ in PHASES].index(TRICKLE_PHASE)
    totals[at : at + trickle] = [sum(totals[at : at + trickle])]  # its dumps, one a call
    calls = [BARE_CALLS] * len(bare()) + [jobs // per for _, per in PHASES]
    calls[-1] = 1  # one enqueue of 1,000
    calls[at] = calls[at + 1] = trickle
    names = [name for name, _, _ in bare()] + [name for name, _ in PHASES]
    return {name: total / n for name, total, n in zip(names, totals, calls, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the commit to compare this tree against")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--port", type=int, default=6391)
    parser.add_argument("--tag", default="", help="suffix of the results file's name")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("redis-server") is None:
        raise SystemExit("valgrind and redis-server must be on PATH")
    sha = subprocess.run(["git", "rev-parse", "--short", args.rev], cwd=HERE, check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        old = Path(scratch) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), sha], cwd=HERE,
                       check=True, capture_output=True)  # fmt: skip
        try:
            before = measure(old, args.port, args.jobs)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=HERE,
                           check=True, capture_output=True)  # fmt: skip
    after = measure(HERE, args.port, args.jobs)
    report(sha, args.jobs, before, after, args.tag)


def report(
    sha: str, jobs: int, before: dict[str, float], after: dict[str, float], tag: str
) -> None:
    now = datetime.now(UTC)
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    versions = package_versions(("redis",)) | {"redis-server": server.stdout.split()[2][2:]}
    per = {name: n for name, n in PHASES} | {name: 0 for name, _, _ in bare()}
    lines = [
        f"# Redis instructions per script call, {sha} and this tree, {now:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"`python -m benchmarks.lua_instructions {sha} --jobs {jobs}"
        + (f" --tag {tag}" if tag else "")
        + "`: instructions inside "
        "`evalShaCommand` (callgrind), per call; the commands a script runs included.",
        "",
        f"| call | {sha} per call | this tree per call | {sha} per job | this tree per job "
        "| this tree / " + sha + " |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, old in before.items():
        new, n = after[name], per[name]
        a, b = (f"{old / n:,.0f}", f"{new / n:,.0f}") if n else ("—", "—")
        lines.append(f"| {name} | {old:,.0f} | {new:,.0f} | {a} | {b} | {new / old:.2f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"lua-instructions-{now:%Y-%m-%d}{'-' + tag if tag else ''}"
    stem.with_suffix(".md").write_text(table)
    record = {"date": now.isoformat(), "machine": machine_line(), "versions": versions,
              "rev": sha, "jobs": jobs, "before": before, "after": after}  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
