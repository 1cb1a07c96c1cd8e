"""The SQLite broker's cost per operation in CPU instructions (callgrind), this tree beside another.

Wall-clock rates on a shared machine swing by 2x from one run to the next; an instruction count
does not. Each operation runs under ``valgrind --tool=callgrind`` twice, with ``--small`` and
``--large`` operations after the same set-up, in a process of its own (every thread counted:
the event loop's and the store's connection thread); the difference over the extra operations
is the instructions of one. What the kernel does (thread wake-ups, ``write`` to the WAL) is
not counted: that is the hop's and the disk's share, which the wall-clock benchmark
(``benchmarks/sqlite.py``) shows.

* ``enqueue``: ``await task.enqueue(k)``, one job a call (the store's connection thread).
* ``enqueue_sync``: ``task.enqueue_sync(k)`` (the calling thread, no event loop).
* ``reserve 10 + settle 10``, ``reserve 1 + settle 1``: the broker alone, per job.

``--base REV`` runs the same in a copy of ``taskit/`` at that commit (``git archive``), first
on the path so it is the one imported. Writes
``benchmarks/results/sqlite-instructions-<date>[-TAG].md`` and ``.json``.

    .venv/bin/python -m benchmarks.sqlite_instructions [--base main] [--small 100 --large 300]
        [--tag T]
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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import anyio

from benchmarks._machine import machine_line, package_versions

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).parent.parent
#: Jobs queued before a reserve-and-settle run, whatever its size (the set-up is subtracted).
QUEUED = 1000
OPS = {
    "enqueue": "await enqueue (1 job)",
    "enqueue_sync": "enqueue_sync (1 job)",
    "alone10": "reserve 10 + settle 10, per job",
    "alone1": "reserve 1 + settle 1, per job",
}


def child(op: str, count: int, directory: Path) -> None:
    """Set up a fresh file, then run ``count`` of ``op`` (the process callgrind measures)."""
    from taskit import App, Settings
    from taskit.job import Outcome, OutcomeKind

    app = App(f"sqlite:///{directory}/jobs.db", settings=Settings(result_ttl=60.0))

    @app.task(name="probe", max_retries=0)
    def probe(k: int) -> None:
        return None

    async def run() -> None:
        await app.stats()  # the file and schema
        if op == "enqueue":
            for k in range(count):
                await probe.enqueue(k)
        elif op.startswith("alone"):
            per = int(op.removeprefix("alone"))
            if count + per > QUEUED:
                raise ValueError(f"at most {QUEUED - per} operations of {op}")
            await app.enqueue_many([probe.prepare(k) for k in range(QUEUED)])  # same set-up
            done = 0
            while done < count:
                leases = await app.broker.reserve(["default"], count=per, lease=30.0, timeout=0)
                outcomes = [Outcome(job_id=held.job.id, token=held.token,
                                    kind=OutcomeKind.COMPLETE) for held in leases]  # fmt: skip
                assert all(await app.broker.settle(outcomes))
                done += len(leases)
        await app.close()

    if op == "enqueue_sync":
        anyio.run(app.stats)
        for k in range(count):
            probe.enqueue_sync(k)
        anyio.run(app.close)
    else:
        anyio.run(run)


def instructions(tree: Path | None, op: str, count: int) -> int:
    """The instructions callgrind counts in a child running ``count`` of ``op``."""
    # Run from the scratch directory: from ROOT, ``-m`` would import ROOT's taskit first.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(t) for t in (tree, ROOT) if t])}
    with tempfile.TemporaryDirectory(prefix="taskit-cg-") as scratch:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/cg.out",
             sys.executable, "-m", "benchmarks.sqlite_instructions", "--child", op, str(count),
             scratch],
            cwd=scratch, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    imported = re.search(r"taskit from (\S+)", out.stderr)
    if imported is None or not imported.group(1).startswith(str(tree or ROOT)):
        raise RuntimeError(f"the child imported the wrong taskit: {out.stderr[-500:]}")
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"callgrind gave no count for {op}: {out.stderr[-500:]}")
    return int(found.group(1))


def per_op(tree: Path | None, op: str, small: int, large: int, pool: ThreadPoolExecutor) -> int:
    """One ``op``'s instructions: the two counts taken at once (each child is one process)."""
    few, many = pool.map(lambda n: instructions(tree, op, n), (small, large))
    return (many - few) // (large - small)


def base_tree(rev: str, into: Path) -> str:
    """``taskit/`` at ``rev`` copied into ``into``; the short commit id."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    archive = subprocess.run(["git", "archive", sha, "taskit"], cwd=ROOT, check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return sha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="an earlier commit to set beside this tree")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=300)
    parser.add_argument("--tag", default="")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import taskit

        print(f"taskit from {taskit.__file__}", file=sys.stderr)
        op, count, directory = args.child
        child(op, int(count), Path(directory))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    here = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    figures: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="taskit-base-") as scratch:
        trees: dict[str, Path | None] = {f"this tree ({here})": None}
        if args.base:
            trees[f"base ({base_tree(args.base, Path(scratch))})"] = Path(scratch)
        with ThreadPoolExecutor(2) as pool:  # counts do not depend on what else runs
            for label, tree in trees.items():
                figures[label] = {op: per_op(tree, op, args.small, args.large, pool) for op in OPS}
                print(label, figures[label], flush=True)
    write(figures, args)


def write(figures: dict[str, dict[str, int]], args: argparse.Namespace) -> None:
    labels = list(figures)
    lines = ["| operation | " + " | ".join(labels) + (" | this / base |" if len(labels) > 1
             else " |"), "|---" * (len(labels) + 1 + (len(labels) > 1)) + "|"]  # fmt: skip
    for op, title in OPS.items():
        cells = [f"{figures[label][op]:,}" for label in labels]
        if len(labels) > 1:
            cells.append(f"{figures[labels[0]][op] / figures[labels[1]][op]:.2f}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    stamp = datetime.now(UTC)
    name = f"sqlite-instructions-{stamp:%Y-%m-%d}" + (f"-{args.tag}" if args.tag else "")
    base = f" --base {args.base}" if args.base else ""
    head = (
        f"# SQLite broker: instructions per operation ({stamp:%Y-%m-%d %H:%M} UTC)\n\n"
        f"`python -m benchmarks.sqlite_instructions{base} --small {args.small} --large "
        f"{args.large}`; callgrind, every thread of the process, (large - small) / (large - "
        f"small operations); {machine_line()} {package_versions(('anyio',))}.\n\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(head + "\n".join(lines) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"figures": figures, "args": vars(args)}))
    print(f"wrote {RESULTS / name}.md")


if __name__ == "__main__":
    main()
