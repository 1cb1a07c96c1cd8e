"""Flow control: at most 2 exports per customer, at most 3 calls to a payment API at once over
every worker, and an API token's 5 starts a second.

The broker enforces each limit at reserve time, over all workers: a job whose slot is taken
waits in the broker (not in a worker, without spending an attempt) and goes back to its queue
when a slot frees; a job over its rate is delayed to when the next start is allowed.

Runs on the in-process memory broker, or on the broker URL given:

    python examples/limits.py
    python examples/limits.py "redis://127.0.0.1:6379/0?prefix=limits-demo"
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import anyio

from taskit import App

app = App(sys.argv[1] if len(sys.argv) > 1 else "memory://")

exports = app.limit("exports", concurrency=2)  # used per customer below
payment_api = app.limit("payment-api", concurrency=3)  # used bare: one count for all jobs
api_token = app.limit("api-token", rate=5, per=1.0, burst=2)  # 5 starts a second, 2 at once

running: Counter[str] = Counter()
peaks: Counter[str] = Counter()
starts: list[float] = []


async def busy(*keys: str) -> None:
    """Count the jobs running per key, as the limits see them, and keep each key's peak."""
    for key in keys:
        running[key] += 1
        peaks[key] = max(peaks[key], running[key])
    await anyio.sleep(0.05)
    for key in keys:
        running[key] -= 1


@app.task(name="export", limits=[exports.by("customer_id"), payment_api])
async def export(customer_id: str, report: str) -> None:
    await busy(f"exports:{customer_id}", "payment-api")


@app.task(name="call_api", limits=[api_token.by(lambda token, **_: token[:8])])
async def call_api(token: str, n: int) -> None:
    starts.append(time.monotonic())


async def main() -> None:
    jobs = [await export.enqueue("acme", f"r{i}") for i in range(6)]
    jobs += [await export.enqueue("zeta", f"r{i}") for i in range(2)]
    print(f"an export job needs: {', '.join(jobs[0].limits)}")
    calls = [await call_api.enqueue("tok_1234-secret", n) for n in range(6)]
    print(f"an API call needs: {', '.join(calls[0].limits)}")

    began = time.monotonic()
    stats = await app.worker(concurrency=8).run(burst=True)
    print(f"acme exports at once: {peaks['exports:acme']} (limit 2)")
    print(f"zeta exports at once: {peaks['exports:zeta']} (limit 2)")
    print(f"payment API calls at once: {peaks['payment-api']} (limit 3)")
    spread = max(starts) - began
    # 6 starts, 2 at once then 1 every 0.2 s: the last no sooner than 0.8 s after the first.
    print(f"API calls: {len(starts)} started over {spread:.1f}s (at least 0.8s)")
    usage = await app.broker.limit_usage("exports")  # what `taskit limits` shows
    now, waiting = sum(usage.running.values()), sum(usage.waiting.values())
    print(f"exports running now: {now}, waiting: {waiting}")
    print(f"worker: {stats}")
    await app.close()


if __name__ == "__main__":
    anyio.run(main)
