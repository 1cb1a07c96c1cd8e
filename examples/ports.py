"""Ports from other job kits: an adapter that depends on the JobCreator port, jobs created in the
port's spelling (queue_name=, priority=), run one at a time with process_one, periodic schedules
from JSON text (TASKIT_SCHEDULE_JSON), and metrics under a name prefix of your own.

    python examples/ports.py                                  # the in-process memory:// broker
    TASKIT_BROKER_URL=redis://localhost:6379/0 python examples/ports.py

Every setting comes from the environment (TASKIT_*); without TASKIT_SCHEDULE_JSON the example
sets one. In production the same JSON in the environment is loaded by `taskit worker --scheduler`
and `taskit scheduler`, and `taskit worker --metrics-port 9100 --metrics-prefix myapp_jobs` (or
TASKIT_METRICS_PREFIX) serves the metrics.
"""

from __future__ import annotations

import anyio

from taskit import App, JobCreator, JobService, Settings
from taskit.metrics import Metrics
from taskit.scheduler import Scheduler, load_schedules_json

SCHEDULE = """[
    {"name": "nightly-cleanup", "task": "data.cleanup", "cron": "0 3 * * *", "missed": "once"}
]"""

settings = Settings.from_env()  # TASKIT_SCHEDULE_JSON, TASKIT_METRICS_PREFIX, ...
if settings.schedule_json is None:
    settings = settings.replace(schedule_json=SCHEDULE)
if settings.metrics_prefix == "taskit":  # the default: show one of our own
    settings = settings.replace(metrics_prefix="myapp_jobs")
app = App(settings=settings)


@app.task(name="email.send")
async def send_email(to: str, subject: str) -> str:
    return f"sent {subject!r} to {to}"


@app.task(name="payment.process")
async def process_payment(transaction_id: str, amount: float) -> str:
    return f"charged {amount:.2f} for {transaction_id}"


@app.task(name="data.cleanup")
def cleanup() -> int:
    return 0  # rows removed


class SignupAdapter:
    """An adapter that needs only to create jobs: it depends on the port, not on JobService, so
    its tests can hand it a fake."""

    def __init__(self, jobs: JobCreator) -> None:
        self.jobs = jobs

    async def signed_up(self, email: str) -> None:
        await self.jobs.create_job(
            "email.send", {"to": email, "subject": "Welcome"}, queue_name="emails", priority=1
        )


async def main() -> None:
    service = JobService(app)
    print(f"JobService is a JobCreator: {isinstance(service, JobCreator)}")
    metrics = Metrics(app)  # prefix from the settings: myapp_jobs unless TASKIT_METRICS_PREFIX
    await SignupAdapter(service).signed_up("ada@example.com")
    await service.create_job(
        "payment.process", {"transaction_id": "txn_789", "amount": 99.99}, queue_name="payments",
        priority=10,
    )  # fmt: skip
    assert app.settings.schedule_json is not None
    loaded = load_schedules_json(app, app.settings.schedule_json)
    print(f"schedules from JSON: {', '.join(s.name for s in loaded)}")
    await Scheduler(app).tick()  # missed="once": the latest 03:00 run is enqueued now
    # One job at a time, most urgent queue first, until none is ready.
    while (result := await service.process_one(["payments", "emails", "default"])) is not None:
        print(f"ran: {result.value}")
    processed = metrics.registry.get_sample_value(
        f"{metrics.prefix}_jobs_processed_total", {"task": "email.send", "outcome": "completed"}
    )
    print(f"{metrics.prefix}_jobs_processed_total{{task=email.send}} {processed}")
    await app.close()


if __name__ == "__main__":
    anyio.run(main)
