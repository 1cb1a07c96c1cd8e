"""Reporting failures to an error tracker (Sentry, Rollbar, Bugsnag, ...) from job events.

    python examples/error_reporting.py

A subscriber to ``failed`` and ``dead_lettered`` gets each failure with its message, exception
type and traceback as text (``JobEvent.error``, ``.error_type``, ``.traceback``), plus the job's
task, queue, id, attempt and worker: all a report needs. ``report`` below stands in for the
tracker's client; with Sentry it would call ``sentry_sdk.capture_event(...)``, which only queues
the event (a subscriber runs on the worker's event loop and must not block).
"""

from __future__ import annotations

from typing import Any

import anyio

from taskit import App, EventKind, Fail, JobEvent

app = App("memory://")

#: What the stand-in reporter was sent, in order.
reports: list[dict[str, Any]] = []


def report(event: dict[str, Any]) -> None:
    """Stands in for an error tracker's client (``sentry_sdk.capture_event``)."""
    reports.append(event)


@app.on(EventKind.FAILED, EventKind.DEAD_LETTERED)
def to_tracker(event: JobEvent) -> None:
    """One report per job that ended in failure (retries still to come are not reported)."""
    report(
        {
            "level": "error",
            "message": f"{event.task}: {event.error}",
            "exception": {"type": event.error_type, "stacktrace": event.traceback},
            # one issue per task and kind of error, however many jobs hit it
            "fingerprint": [event.task, event.error_type or ""],
            "tags": {"task": event.task, "queue": event.queue, "outcome": event.kind.value},
            "extra": {"job_id": event.job_id, "attempt": event.attempt, "worker": event.worker},
        }
    )


@app.task(name="charge", max_retries=2, backoff=0.0)
async def charge(order: str) -> None:
    raise ConnectionError(f"payment gateway unreachable for {order}")


@app.task(name="validate")
async def validate(email: str) -> None:
    if "@" not in email:
        raise Fail(f"{email!r} is not an email address")


@app.task(name="add")
async def add(a: int, b: int) -> int:
    return a + b


async def main() -> None:
    await charge.enqueue("A-17")
    await validate.enqueue("not-an-email")
    await add.enqueue(2, 3)
    stats = await app.worker(name="worker-1").run(burst=True)
    for sent in reports:
        last_line = (sent["exception"]["stacktrace"] or "").strip().splitlines()[-1]
        print(
            f"reported [{sent['tags']['outcome']}] {sent['message']} "
            f"(attempt {sent['extra']['attempt']}, {sent['exception']['type']}; {last_line})"
        )
    print(stats)


if __name__ == "__main__":
    anyio.run(main)
