"""What the dashboard's pages cost on the server with a large Redis: 100,000 dead letters and
100,000 completed jobs in one queue (issue 16's target: under 300 ms server time per page).

Starts its own ``redis-server`` (no persistence) and seeds it through the broker API as
workers would, in batches (enqueue, reserve, settle ``--batch`` jobs per call), timing the
seeding. Then serves the dashboard (``taskit.dashboard``) under uvicorn on a free loopback port
and loads each main page ``--loads`` times in headless Chromium (Debian's, through Playwright;
``tests/browser/_web.py``), reading the server's time from each response's
``Server-Timing: app;dur=<ms>`` header. Pages: the overview, the queues, the completed jobs
(first page, and a deep page reached through a cursor), the dead letters, one job's page, the
workers. Prints a table (median and p95 per page, server time; the browser's load time beside
it) and writes ``benchmarks/results/dashboard-<date>.json`` with the machine and versions.
``--screenshots DIR`` also saves a PNG of each main page (1280x800): docs/images/ for the docs.

    .venv/bin/python -m benchmarks.dashboard [--dead 100000] [--completed 100000] [--loads 20]
        [--screenshots docs/images]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import anyio
import msgspec
from playwright.sync_api import Page, sync_playwright
from redis.asyncio import Redis

from benchmarks._machine import cpu_model, machine_line, package_versions
from benchmarks._server import redis_server
from taskit import App
from taskit.broker.browse import Listing
from taskit.broker.redis import RedisBroker
from taskit.dashboard import dashboard
from taskit.dashboard.views import encode_cursor
from taskit.job import Job, JobResult, Lease, Outcome, OutcomeKind, Progress, ProgressUpdate
from tests.browser._app import make_app
from tests.browser._web import VIEWPORT, launch, serve

RESULTS = Path(__file__).parent / "results"
QUEUE = "default"
#: Where the deep page starts: this many completed jobs into the listing.
DEEP = 50_000
_DUR = re.compile(r"\bapp;dur=([0-9.]+)")


@dataclass(frozen=True)
class Seeded:
    """What the pages are loaded with: a dead letter's id, a cursor deep into the completed
    listing, and the seconds each part of the seeding took."""

    dead_id: str
    deep_cursor: str
    seconds: dict[str, float]


async def _run_batch(broker: RedisBroker, jobs: list[Job], kind: OutcomeKind) -> None:
    """Enqueue ``jobs``, reserve them in one call and settle them all with ``kind``."""
    await broker.enqueue(jobs)
    leases = await broker.reserve([QUEUE], count=len(jobs), lease=600, timeout=0)
    if len(leases) != len(jobs):
        raise SystemExit(f"reserved {len(leases)} of {len(jobs)} seeded jobs")
    if kind is OutcomeKind.COMPLETE:
        outcomes = [
            Outcome(job_id=x.job.id, token=x.token, kind=kind,
                    result=JobResult(success=True, value=x.job.args[0], duration=0.01))
            for x in leases
        ]  # fmt: skip
    else:
        outcomes = [
            Outcome(job_id=x.job.id, token=x.token, kind=kind, error="gave up after 4 attempts",
                    error_type="TimeoutError", traceback="TimeoutError: 30 s\n")
            for x in leases
        ]  # fmt: skip
    if not all(await broker.settle(outcomes)):
        raise SystemExit(f"a seeded {kind} settle was refused")


async def seed(url: str, prefix: str, dead: int, completed: int, batch: int) -> Seeded:
    """Seed ``dead`` dead letters and ``completed`` completed jobs (in that order), then a few
    live jobs for the overview and workers pages; find a cursor ``DEEP`` jobs deep."""
    app = make_app(url, prefix)
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    resize = app.tasks["shop.resize"]
    seconds: dict[str, float] = {}
    for name, total, kind in (
        ("dead", dead, OutcomeKind.DEAD_LETTER),
        ("completed", completed, OutcomeKind.COMPLETE),
    ):
        began = time.perf_counter()
        for first in range(0, total, batch):
            size = min(batch, total - first)
            jobs = [resize.prepare(f"/img/{name}/{first + i}.png", 640) for i in range(size)]
            await _run_batch(broker, jobs, kind)
        seconds[name] = time.perf_counter() - began
    leases = await _live(app)
    await _workers(broker, leases)
    dead_page = await broker.list_jobs(QUEUE, Listing.DEAD, limit=1)
    cursor: str | None = None
    for _ in range(DEEP // 1000):
        page = await broker.list_jobs(QUEUE, Listing.COMPLETED, cursor=cursor, limit=1000)
        cursor = page.cursor
    if cursor is None or not dead_page.jobs:
        raise SystemExit("the seeded listings are shorter than expected")
    await app.close()
    # The pages' cursors name their queue around the broker's (a walk across queues).
    return Seeded(dead_page.jobs[0].id, encode_cursor(QUEUE, cursor), seconds)


async def _live(app: App) -> list[Lease]:
    """A few queued, scheduled and running jobs (with progress), as a busy system has."""
    broker = app.broker
    emails = app.tasks["shop.send_email"]
    waiting = [emails.prepare(f"user{i}@example.com", f"order {i}") for i in range(40)]
    await broker.enqueue(waiting)
    await broker.enqueue([emails.prepare("later@example.com", "reminder")], delays=[3600])
    leases = await broker.reserve(["emails"], count=6, lease=600, timeout=0)
    now = datetime.now(UTC)
    updates = [
        ProgressUpdate(x.job.id, x.token,
                       Progress(updated_at=now, fraction=f, message=f"{int(f * 100)} of 100 sent"))
        for x, f in zip(leases, (0.4, 0.75, 0.1, 0.95, 0.6, 0.25), strict=False)
    ]  # fmt: skip
    await broker.set_progress(updates)
    return leases


async def _workers(broker: RedisBroker, leases: list[Lease]) -> None:
    """Two live workers, the first running ``leases``' jobs."""
    now = datetime.now(UTC)
    for n, (name, held) in enumerate((("worker-a", leases), ("worker-b", []))):
        record = {
            "name": name, "host": f"app-{n + 1}", "pid": 4100 + n, "queues": [QUEUE, "emails"],
            "concurrency": 8, "started_at": now, "beat_at": now, "running": len(held),
            "jobs_done": 1234 * (n + 1),
            "jobs": [{"id": x.job.id, "task": x.job.task, "started_at": x.job.started_at}
                     for x in held],
        }  # fmt: skip
        await broker.announce(name, msgspec.json.encode(record), ttl=3600)


def pages(seeded: Seeded) -> dict[str, str]:
    """The main pages by name: their paths."""
    return {
        "overview": "/",
        "queues": "/queues",
        "jobs-completed": f"/jobs?queue={QUEUE}&state=completed",
        "jobs-completed-deep": f"/jobs?queue={QUEUE}&state=completed&cursor="
        + quote(seeded.deep_cursor, safe=""),
        "dead": f"/dead?queue={QUEUE}",
        "job": f"/jobs/{seeded.dead_id}",
        "workers": "/workers",
    }


def load(page: Page, url: str) -> tuple[float, float]:
    """Load ``url``: (server ms from Server-Timing, browser ms to the load event)."""
    began = time.perf_counter()
    response = page.goto(url, wait_until="load")
    browser_ms = (time.perf_counter() - began) * 1000
    if response is None or not response.ok:
        raise SystemExit(f"{url}: {response and response.status}")
    timing = _DUR.search(response.header_value("server-timing") or "")
    if timing is None:
        raise SystemExit(f"{url}: no Server-Timing app;dur= header")
    return float(timing.group(1)), browser_ms


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead", type=int, default=100_000)
    parser.add_argument("--completed", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="Jobs per seeding call.")
    parser.add_argument("--loads", type=int, default=20, help="Loads of each page.")
    parser.add_argument("--screenshots", type=Path, help="Save a PNG of each main page here.")
    args = parser.parse_args()
    if args.completed < DEEP + 1000:
        parser.error(f"--completed must be at least {DEEP + 1000} (the deep page)")
    prefix = f"bench-dash-{uuid.uuid4().hex[:8]}"
    with redis_server() as url:
        seeded = anyio.run(seed, url, prefix, args.dead, args.completed, args.batch)
        redis_version = anyio.run(_redis_version, url)
        app = make_app(url, prefix)
        with serve(dashboard(app), close=app.close) as base, sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            paths = pages(seeded)
            timings: dict[str, tuple[list[float], list[float]]] = {}
            for name, path in paths.items():
                load(page, base + path)  # a first load warms the connections and templates
                runs = [load(page, base + path) for _ in range(args.loads)]
                timings[name] = ([s for s, _ in runs], [b for _, b in runs])
            if args.screenshots is not None:
                shoot(page, base, paths, args.screenshots)
            chromium = browser.version
            browser.close()
    report(args, seeded, timings, redis_version, chromium)


def shoot(page: Page, base: str, paths: dict[str, str], into: Path) -> None:
    """A PNG of each main page (the viewport), once its live data came in."""
    into.mkdir(parents=True, exist_ok=True)
    for name in ("overview", "queues", "jobs-completed", "dead", "job", "workers"):
        page.goto(base + paths[name], wait_until="load")
        if name == "overview":  # the live stream fills the figures in
            page.wait_for_selector("[data-testid=live-status]:text('live')")
        page.screenshot(path=into / f"dashboard-{name}.png")
    page.goto(base + "/progress", wait_until="load")
    page.screenshot(path=into / "dashboard-progress.png")


async def _redis_version(url: str) -> str:
    client = Redis.from_url(url)
    try:
        return str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()


def _git_rev() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).parent)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def report(
    args: argparse.Namespace,
    seeded: Seeded,
    timings: dict[str, tuple[list[float], list[float]]],
    redis_version: str,
    chromium: str,
) -> None:
    """Print the table and write the results JSON."""
    when = datetime.now(UTC)
    versions = package_versions(("taskit", "redis", "starlette", "jinja2", "uvicorn", "playwright"))
    versions |= {"redis_server": redis_version, "taskit_git": _git_rev(), "chromium": chromium}
    seeding = ", ".join(
        f"{n:,} {name} in {seeded.seconds[name]:.1f} s ({n / seeded.seconds[name]:,.0f}/s)"
        for name, n in (("dead", args.dead), ("completed", args.completed))
    )
    lines = [
        f"# Dashboard page loads, {when:%Y-%m-%d %H:%M} UTC",
        "",
        machine_line(),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"Seeded (batches of {args.batch}): {seeding}.",
        f"Each page loaded {args.loads} times after one warm-up load; server time from "
        "`Server-Timing: app;dur=`, browser time to the load event (ms).",
        "",
        "| page | server median | server p95 | browser median |",
        "|---|---|---|---|",
    ]
    rows = {}
    for name, (server, browser) in timings.items():
        rows[name] = {"server_ms": server, "browser_ms": browser,
                      "server_median": statistics.median(server), "server_p95": p95(server),
                      "browser_median": statistics.median(browser)}  # fmt: skip
        r = rows[name]
        lines.append(f"| {name} | {r['server_median']:.1f} | {r['server_p95']:.1f} | "
                     f"{r['browser_median']:.1f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    data = {
        "date": when.isoformat(), "machine": machine_line(), "cpu": cpu_model(),
        "cores": os.cpu_count(), "versions": versions, "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "deep_offset": DEEP, "seeding_seconds": seeded.seconds, "pages": rows, "table": text,
    }  # fmt: skip
    path = RESULTS / f"dashboard-{when:%Y-%m-%d}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
