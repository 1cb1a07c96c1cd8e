"""The figures of ``benchmarks/shards.py``: one timed phase's measurements, and the report
(markdown and JSON) of several runs: medians of the figures and of ratios taken within a run."""

from __future__ import annotations

import shutil
import statistics
import subprocess
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from benchmarks._machine import machine_line, package_versions

__all__ = ["PHASES", "Phase", "config_name", "report"]

PHASES = ("single", "batch", "drain")
#: Goal (issue 17): on 3 masters the busiest master's share of the Redis CPU at most 10% above
#: the least busy one's.
EVEN = 1.10

Run = dict[str, dict[str, "Phase"]]


@dataclass
class Phase:
    """One timed phase: jobs, wall seconds, Redis CPU seconds, calls by command, round trips
    and sleeps (voluntary context switches) per master (in node order), the machine's busy
    cores over the phase, the clients' CPU per job (µs: the producers' over the timed part,
    the workers' over the drain's window) and, for a drain, the seconds from the first job's
    end to the last one's over its ``span_jobs`` jobs. Per master too: the system part of the
    CPU, reply writes, bytes read, involuntary context
    switches, and ``idle``: the CPU seconds a second the master used with no clients (the
    baseline measured around the runs; empty when not measured)."""

    jobs: int
    seconds: float
    cpu: list[float]
    calls: list[dict[str, int]]
    reads: list[int]
    sleeps: list[int]
    busy_cores: float
    span: float | None = None
    span_jobs: int = 0
    client_us: float = 0.0
    sys: list[float] = field(default_factory=list)
    writes: list[int] = field(default_factory=list)
    net_in: list[int] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)
    idle: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Jobs/s: a drain's ``(span_jobs - 1) / span``, an enqueue's jobs over its wall
        time."""
        if self.span:
            return (self.span_jobs - 1) / self.span
        return self.jobs / self.seconds

    @property
    def redis_us(self) -> float:
        """Redis CPU per job, all masters, µs."""
        return sum(self.cpu) / self.jobs * 1e6

    @property
    def idle_us(self) -> float:
        """The masters' idle baseline over the phase's seconds, per job, µs: what they would
        have used with no clients at all."""
        return sum(self.idle) * self.seconds / self.jobs * 1e6

    @property
    def net_us(self) -> float:
        """Redis CPU per job with the idle baseline taken off (``redis_us - idle_us``), µs."""
        return self.redis_us - self.idle_us

    def net(self) -> Phase:
        """This phase with each master's idle baseline over its seconds taken off its CPU."""
        cpu = [c - r * self.seconds for c, r in zip(self.cpu, self.idle or [0.0] * len(self.cpu),
                                                    strict=True)]  # fmt: skip
        return replace(self, cpu=cpu, idle=[])

    @property
    def sys_us(self) -> float:
        """The system part of the Redis CPU per job, all masters, µs."""
        return sum(self.sys) / self.jobs * 1e6

    @property
    def writes_per_job(self) -> float:
        """Reply writes per job, all masters."""
        return sum(self.writes) / self.jobs

    @property
    def bytes_per_read(self) -> float:
        """Bytes a master read per read event, all masters together."""
        return sum(self.net_in) / max(1, sum(self.reads))

    @property
    def preemptions(self) -> float:
        """Times the scheduler took a master's core away mid-work, per job, all masters."""
        return sum(self.preempted) / self.jobs

    @property
    def commands(self) -> float:
        """Commands per job, all masters (those run inside scripts too)."""
        return sum(sum(c.values()) for c in self.calls) / self.jobs

    @property
    def trips(self) -> float:
        """Round trips (read events) per job, all masters."""
        return sum(self.reads) / self.jobs

    @property
    def wakeups(self) -> float:
        """Times a master slept and woke again per job, all masters."""
        return sum(self.sleeps) / self.jobs

    @property
    def shares(self) -> list[float]:
        """Each master's share of the Redis CPU."""
        total = sum(self.cpu)
        return [c / total for c in self.cpu]

    @property
    def spread(self) -> float:
        """The busiest master's CPU over the least busy one's (1.0: even)."""
        return max(self.cpu) / min(self.cpu)

    @property
    def redis_cores(self) -> float:
        """Cores the masters kept busy together over the phase."""
        return sum(self.cpu) / self.seconds

    @property
    def client_cores(self) -> float:
        """Cores the benchmark's clients (producers or workers) kept busy at this rate."""
        return self.client_us * self.rate / 1e6

    @property
    def ceiling(self) -> float:
        """Jobs/s of this phase at which the busiest master would use one whole core: the
        ceiling when clients are not the limit (``m / c`` when the split is even)."""
        return self.jobs / max(self.cpu)


def redis_server_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return out.stdout.strip()


def _summary(values: list[float], fmt: str = ",.0f") -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def config_name(masters: int, shards: int) -> str:
    return f"{masters}m{shards}s"


def _whole(run: Run, name: str, phases: tuple[str, ...], net: bool = False) -> Phase:
    """``phases`` of one configuration as one: CPU and calls summed per master, per drained
    job (a job's life: its enqueue plus its share of the drain); with ``net``, each phase's
    CPU less its masters' idle baseline over its seconds."""
    parts = [run[name][p].net() if net else run[name][p] for p in phases]
    jobs = parts[-1].jobs
    cpu = [sum(p.cpu[i] * jobs / p.jobs for p in parts) for i in range(len(parts[0].cpu))]
    return Phase(jobs=jobs, seconds=sum(p.seconds for p in parts), cpu=cpu,
                 calls=[{} for _ in cpu], reads=[0 for _ in cpu], sleeps=[0 for _ in cpu],
                 busy_cores=0.0)  # fmt: skip


def _life_us(run: Run, name: str, phases: tuple[str, ...], net: bool = False) -> float:
    return _whole(run, name, phases, net).redis_us


def config_rows(runs: list[Run], configs: list[tuple[int, int]]) -> list[str]:
    rows = []
    for masters, shards in configs:
        name = config_name(masters, shards)
        for p in PHASES:
            got = [run[name][p] for run in runs]
            shares = "/".join(
                f"{statistics.median(g.shares[i] for g in got):.0%}" for i in range(masters)
            )
            rows.append(
                f"| {masters} | {shards} | {p} | {_summary([g.rate for g in got])} "
                f"| {_summary([g.redis_us for g in got], '.1f')} "
                f"| {_summary([g.client_us for g in got], '.1f')} "
                f"| {_summary([g.commands for g in got], '.2f')} "
                f"| {_summary([g.trips for g in got], '.2f')} "
                f"| {_summary([g.wakeups for g in got], '.2f')} | {shares} "
                f"| {_summary([g.spread for g in got], '.2f') if masters > 1 else '-'} "
                f"| {_summary([g.redis_cores for g in got], '.2f')} "
                f"| {_summary([g.client_cores for g in got], '.2f')} "
                f"| {_summary([g.busy_cores for g in got], '.2f')} |"
            )
    return rows


def cause_rows(runs: list[Run], configs: list[tuple[int, int]]) -> list[str]:
    """Where each phase's Redis CPU per job goes: idle baseline, user and system time, inside
    and outside commands, and the events that cost it."""
    rows = []
    for masters, shards in configs:
        name = config_name(masters, shards)
        for p in PHASES:
            got = [run[name][p] for run in runs]
            cells = [
                _summary([g.redis_us for g in got], ".1f"),
                _summary([g.idle_us for g in got], ".2f"),
                _summary([g.net_us for g in got], ".1f"),
                _summary([g.redis_us - g.sys_us for g in got], ".1f"),
                _summary([g.sys_us for g in got], ".1f"),
                _summary([g.trips for g in got], ".2f"),
                _summary([g.writes_per_job for g in got], ".2f"),
                _summary([g.bytes_per_read for g in got], ",.0f"),
                _summary([g.wakeups for g in got], ".2f"),
                _summary([g.preemptions for g in got], ".3f"),
            ]
            rows.append(f"| {masters} | {shards} | {p} | " + " | ".join(cells) + " |")
    return rows


def idle_rows(idle: dict[str, dict[int, list[float]]]) -> list[str]:
    return [
        f"| {masters} | {when} | "
        + " / ".join(f"{r * 1e3:.2f}" for r in rates)
        + f" | {sum(rates) * 1e3:.2f} |"
        for when, clusters in idle.items()
        for masters, rates in sorted(clusters.items())
    ]


LIFE = {"single + drain": ("single", "drain"), "batch + drain": ("batch", "drain")}


def goal_rows(runs: list[Run]) -> list[str]:
    """The issue's goals, for the configurations measured (``--configs``)."""
    three, one, old = config_name(3, 3), config_name(1, 1), config_name(3, 1)
    have = set(runs[0])
    if three not in have:
        return []
    even = f"<= {EVEN:.2f}"
    rows = [
        (f"CPU split on 3 masters, 3 shards: max / min share, {p}",
         [run[three][p].spread for run in runs], even)
        for p in PHASES
    ]  # fmt: skip
    for label, phases in LIFE.items():
        rows.append((f"CPU split on 3 masters, 3 shards: max / min share, a job's {label}",
                     [_whole(run, three, phases).spread for run in runs], even))  # fmt: skip
    for shards in (2, 3):
        name = config_name(shards, shards)
        for label, phases in LIFE.items() if {one, name} <= have else ():
            for net in (False, True):
                ratios = [_life_us(run, name, phases, net) / _life_us(run, one, phases, net)
                          for run in runs]  # fmt: skip
                what = "net of idle" if net else "raw"
                rows.append((f"Redis CPU per job ({what}), {label}: {shards} shards / 1 shard",
                             ratios, "not above 1 (noise aside)"))  # fmt: skip
    for label, phases in LIFE.items() if old in have else ():
        for net in (False, True):
            ratios = [_life_us(run, three, phases, net) / _life_us(run, old, phases, net)
                      for run in runs]  # fmt: skip
            what = "net of idle" if net else "raw"
            rows.append((f"Redis CPU per job ({what}), {label}: 3 masters 3 shards / 3 masters "
                         "1 shard", ratios, ""))  # fmt: skip
    return [f"| {label} | {_summary(values, '.2f')} | {goal} |" for label, values, goal in rows]


def ceiling_rows(runs: list[Run], configs: list[tuple[int, int]]) -> list[str]:
    rows = []
    for masters, shards in configs:
        name = config_name(masters, shards)
        for label, phases in LIFE.items():
            lives = [_whole(run, name, phases) for run in runs]
            nets = [_whole(run, name, phases, net=True) for run in runs]
            rows.append(
                f"| {masters} | {shards} | {label} "
                f"| {_summary([life.redis_us for life in lives], '.1f')} "
                f"| {_summary([life.redis_us for life in nets], '.1f')} "
                f"| {_summary([life.ceiling for life in lives])} |"
            )
    return rows


def report(
    when: datetime,
    runs: list[Run],
    configs: list[tuple[int, int]],
    args: dict[str, Any],
    idle: dict[str, dict[int, list[float]]],
    load: tuple[float, float],
) -> tuple[str, dict[str, Any]]:
    """The markdown report and the JSON data (every phase of every run) of ``runs``."""
    versions = package_versions(("taskit", "redis", "hiredis", "anyio", "msgspec"))
    versions["redis-server"] = redis_server_version()
    quick = " (quick: a check that it works, not figures to quote)" if args["quick"] else ""
    idle_s = args.get("idle_seconds", 0.0)
    lines = [
        f"# One App over 1, 2, 3 Redis Cluster masters{quick}, {when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"`python -m benchmarks.shards {args['command']}`: "
        f"{args['producers']} producer processes ({args['tasks']} coroutines each for single "
        f"enqueues), {args['single']:,} single then {args['batch']:,} batch-enqueued no-op jobs, "
        f"then {args['workers']} `taskit worker` processes (concurrency {args['concurrency']}) "
        "drain them all; clusters without replicas, one slot range per master. Median [range] "
        f"of {args['runs']} runs; ratios are taken within a run. Redis µs/job is raw (every "
        "CPU second the masters used over the phase) unless marked net of idle. "
        f"The machine's 1-minute load average was {load[0]:.1f} at the start and {load[1]:.1f} "
        "at the end (busy cores beyond Redis's and the clients' are other work on the machine).",
        "",
        "| masters | shards | phase | jobs/s | Redis µs/job | clients' µs/job | commands/job "
        "| round trips/job | wake-ups/job | CPU share per master | max / min | Redis cores "
        "| clients' cores | machine busy cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *config_rows(runs, configs),
        "",
        "| figure | measured | goal |",
        "|---|---|---|",
        *goal_rows(runs),
        "",
        "Redis CPU per job over a job's life (its enqueue plus its share of the drain), and the "
        "jobs/s at which the busiest master would use a whole core (the ceiling when the clients "
        "are not the limit):",
        "",
        "| masters | shards | life | Redis µs/job (raw) | Redis µs/job (net of idle) "
        "| ceiling jobs/s (raw) |",
        "|---|---|---|---|---|---|",
        *ceiling_rows(runs, configs),
        "",
        f"Idle baseline: each master's CPU (ms a second) over {idle_s:.0f} s with no clients "
        "(only the two `INFO` that read it), every cluster over the same window, before the "
        "runs and after them. Net of idle takes each master's larger rate times the phase's "
        "seconds off its CPU.",
        "",
        "| masters | when | ms/s per master | ms/s all masters |",
        "|---|---|---|---|",
        *idle_rows(idle),
        "",
        "Where a job's Redis CPU goes, all masters, per job: raw, idle baseline over the phase, "
        "net of idle; user and system CPU (the kernel splits the two by sampling at its tick, "
        "so the split is rough over a phase of a second or two); round trips (read events), "
        "reply writes, bytes per read, sleeps (voluntary context switches) and preemptions "
        "(involuntary ones):",
        "",
        "| masters | shards | phase | raw µs | idle µs | net µs | user µs | system µs "
        "| round trips | writes | bytes/read | sleeps "
        "| preemptions |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *cause_rows(runs, configs),
    ]
    data = {
        "date": when.isoformat(), "machine": machine_line(), "versions": versions, "args": args,
        "configs": [config_name(m, s) for m, s in configs],
        "idle_cpu_per_s": {when: {str(m): r for m, r in c.items()} for when, c in idle.items()},
        "load_average": load,
        "runs": [{name: {p: {**asdict(ph), "rate": ph.rate, "redis_us": ph.redis_us,
                             "commands": ph.commands, "trips": ph.trips, "wakeups": ph.wakeups,
                             "shares": ph.shares, "idle_us": ph.idle_us, "net_us": ph.net_us,
                             "sys_us": ph.sys_us}
                         for p, ph in cfg.items()} for name, cfg in run.items()} for run in runs],
    }  # fmt: skip
    return "\n".join(lines) + "\n", data
