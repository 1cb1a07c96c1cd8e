"""What a script's includes cost Redis per call, before the script does anything.

A Redis script runs its whole text on every call: every helper it includes is defined again, and
every table at its top made again, each time. This measures that floor. For each prefix of the
include chain the scripts use (``_common``, ``_msgpack``, ``_limits``, ``_workflow``), whole, and
for the hot scripts (enqueue, reserve, settle) the includes as the loader pastes them (only the
helpers the script reaches, ``taskit.broker.redis.includes``), it loads a script of those
includes followed by ``return 1`` into a private ``redis-server`` and calls it ``--calls`` times
(a hot script's own text stays in, under ``if false``, so that it reaches what it reaches), and
the same includes pasted whole, as before. Redis's own CPU per call is read from ``INFO
commandstats`` (``usec`` / ``calls`` of EVALSHA, which excludes the network), median of
``--runs`` rounds, the variants interleaved in each round. Writes
``benchmarks/results/lua-includes-<date>.md`` and ``.json``.

    .venv/bin/python -m benchmarks.lua_includes [--runs 5] [--calls 3000]
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import redis

from benchmarks._machine import machine_line, package_versions
from benchmarks._server import redis_server
from taskit.broker.redis.includes import INCLUDE, expand

RESULTS = Path(__file__).parent / "results"
#: The include chain, in the order scripts paste them.
CHAIN = ("_common.lua", "_msgpack.lua", "_limits.lua", "_workflow.lua")
#: The scripts of a job's lifecycle, whose includes as pasted are measured too.
HOT = ("enqueue-n.lua", "reserve-n.lua", "settle-n.lua")


def variants() -> dict[str, str]:
    """Script text by name: ``return 1`` alone, then each prefix of ``CHAIN`` before it."""
    lua = resources.files("taskit.broker.redis").joinpath("lua")
    out = {"return 1 (nothing included)": "return 1"}
    text = "local rcall = redis.call\n"
    for name in CHAIN:
        text += lua.joinpath(name).read_text() + "\n"
        out[" + ".join(CHAIN[: CHAIN.index(name) + 1])] = text + "return 1"
    texts = {entry.name: entry.read_text("utf-8") for entry in lua.iterdir()}
    for name in HOT:
        lines = INCLUDE.findall(texts[name])
        body = INCLUDE.sub("", texts[name]).replace("local rcall = redis.call\n", "", 1)
        skipped = "local rcall = redis.call\n"
        skipped += "".join(f"-- @include {file}\n" for file in lines)
        skipped += f"if false then\n{body}\nend\nreturn 1\n"
        out[f"{name}'s includes, whole (before)"] = INCLUDE.sub(
            lambda m: texts[m.group("file")], skipped
        )
        out[f"{name}'s includes, as pasted"] = expand(skipped, texts)
    return out


def usec_per_call(client: redis.Redis, sha: str, calls: int) -> float:
    """Redis's CPU per EVALSHA of ``sha`` over ``calls`` calls, in µs."""
    client.config_resetstat()
    for _ in range(calls):
        client.evalsha(sha, 0)
    stats = client.info("commandstats")["cmdstat_evalsha"]
    return float(stats["usec"]) / float(stats["calls"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    texts = variants()
    rounds: dict[str, list[float]] = {name: [] for name in texts}
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        shas = {name: client.script_load(text) for name, text in texts.items()}
        for _ in range(args.runs):
            for name, sha in shas.items():
                rounds[name].append(usec_per_call(client, sha, args.calls))
        server = client.info("server")["redis_version"]
        client.close()
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    now = datetime.now(UTC)
    versions = package_versions(("redis",)) | {"redis-server": str(server)}
    lines = [
        f"# What a script's includes cost Redis per call, {now:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"`python -m benchmarks.lua_includes --runs {args.runs} --calls {args.calls}`: Redis's "
        "CPU per EVALSHA (INFO commandstats), median of the rounds [range].",
        "",
        "| script text before `return 1` | µs per call |",
        "|---|---:|",
    ]
    for name, values in rounds.items():
        lines.append(f"| {name} | {medians[name]:.1f} [{min(values):.1f}-{max(values):.1f}] |")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"lua-includes-{now:%Y-%m-%d}"
    stem.with_suffix(".md").write_text(table)
    record = {
        "date": now.isoformat(),
        "machine": machine_line(),
        "versions": versions,
        "runs": args.runs,
        "calls": args.calls,
        "rounds": rounds,
        "medians": medians,
    }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
