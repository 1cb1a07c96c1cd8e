"""Choosing what to retry: ``retry_on`` and ``dont_retry_on``; and a job that expires.

A payment task retries what may pass (the gateway hung up, a timeout) and fails at once on what
cannot (the card was declined): the declined job is ``failed`` after one attempt, with its error
and traceback kept, and never fills the dead letters. A charge enqueued with ``expires`` that no
worker started in time is dropped unrun (``cancelled``, "Expired").

Runs on the in-process memory broker, or on the broker URL given:

    python examples/retry_on.py
    python examples/retry_on.py "redis://127.0.0.1:6379/0?prefix=retry-demo"
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import anyio

from taskit import App, Job, Retry, Settings


class CardDeclined(Exception):
    """Retrying cannot help: the bank said no."""


class StolenCard(CardDeclined):
    """A subclass: matched by ``CardDeclined`` as ``except`` would match it."""


app = App(sys.argv[1] if len(sys.argv) > 1 else "memory://", settings=Settings(backoff=0.0))
runs: dict[str, int] = {}


async def alert(job: Job, error: BaseException) -> None:
    """``on_failure`` runs once for a failure not retried, as for every raised failure. Async,
    so it runs on the event loop: a sync hook runs in a thread, and two threads' prints could
    interleave."""
    print(f"alert: {job.args[0]} attempt {job.attempts}: {type(error).__name__}")


@app.task(
    name="charge",
    max_retries=3,
    retry_on=(ConnectionError, TimeoutError),  # what may pass if tried again
    dont_retry_on=(CardDeclined,),  # wins over retry_on, subclasses included
    on_failure=alert,
)
async def charge(order: str) -> str:
    runs[order] = runs.get(order, 0) + 1
    if order == "A-1" and runs[order] < 3:
        raise ConnectionResetError("gateway hung up")  # a ConnectionError: retried
    if order == "A-2":
        raise StolenCard("card reported stolen")  # failed at once
    if order == "A-3":
        raise KeyError("currency")  # not in retry_on: failed at once, a bug to fix
    if order == "A-4" and runs[order] < 2:
        raise Retry(delay=0)  # an explicit Retry is always honoured
    return f"{order} charged on attempt {runs[order]}"


async def main() -> None:
    jobs = [await charge.enqueue(order) for order in ("A-1", "A-2", "A-3", "A-4")]
    # Expired already when a worker takes it: dropped, never run.
    jobs.append(await charge.options(expires=datetime.now(UTC)).enqueue("A-5"))
    stats = await app.worker(concurrency=2).run(burst=True)
    for job in jobs:
        final = await app.get_job(job.id)
        assert final is not None
        if final.status.value == "completed":
            assert final.result is not None
            shown = final.result.value
        elif final.status.value == "cancelled":
            shown = f"{final.error_type}: {final.error}"
        else:  # the error and the last line of its traceback are kept on the job
            assert final.traceback is not None
            shown = final.traceback.splitlines()[-1]
        print(f"{job.args[0]} {final.status.value:<10} attempts={final.attempts}  {shown}")
    print(f"dead letters: {len(await app.broker.dead_letters('default'))}")
    print(f"worker: {stats}")
    await app.close()


if __name__ == "__main__":
    anyio.run(main)
