"""Class handlers with injected dependencies, and retries and dead letters shown on purpose.

    python examples/handlers.py

* `SendEmail` gets its mailer and templates through its constructor. The mailer fails twice
  (a transient error, raised: retried), then works. An unknown template is an expected failure
  (returned: not retried).
* `ChargeCard` always raises: its retries are spent and the job lands in the dead letters, where
  it waits to be inspected and requeued (`taskit` keeps the error and traceback).
* Every failure, retried or not, reaches `on_failure`, here an "alerting" list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from taskit import App, Fixed, Job, JobHandler, JobResult, JobService, Settings

app = App("memory://", settings=Settings(max_retries=2))


@dataclass
class FlakyMailer:
    """Stands in for an SMTP client: the first `failures` sends raise."""

    failures: int
    sent: list[str] = field(default_factory=list)

    async def send(self, to: str, body: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("SMTP server not answering")
        self.sent.append(f"{to}: {body}")


class SendEmail(JobHandler):
    job_type = "email.send"

    def __init__(self, mailer: FlakyMailer, templates: dict[str, str], alerts: list[str]) -> None:
        self.mailer = mailer
        self.templates = templates
        self.alerts = alerts

    async def handle(self, job: Job) -> JobResult:
        payload = job.kwargs
        template = self.templates.get(payload["template"])
        if template is None:  # expected: retrying cannot help
            return JobResult(success=False, error=f"no template {payload['template']!r}")
        await self.mailer.send(payload["to"], template.format(**payload))  # may raise: retried
        return JobResult(success=True, value={"to": payload["to"], "attempt": job.attempts})

    async def on_failure(self, job: Job, error: BaseException) -> None:
        self.alerts.append(f"{self.job_type} attempt {job.attempts}: {error}")


class ChargeCard(JobHandler):
    job_type = "payment.charge"

    def __init__(self, alerts: list[str]) -> None:
        self.alerts = alerts

    async def handle(self, job: Job) -> JobResult:
        raise TimeoutError(f"payment gateway timed out for order {job.kwargs['order']}")

    async def on_failure(self, job: Job, error: BaseException) -> None:
        if job.attempts > job.max_retries:  # the last failure: it goes to the dead letters
            self.alerts.append(f"{self.job_type} dead-lettered after {job.attempts} attempts")


alerts: list[str] = []
mailer = FlakyMailer(failures=2)
app.register(
    SendEmail(mailer, {"welcome": "Welcome, {name}!"}, alerts), max_retries=3, backoff=Fixed(0.01)
)
app.register(ChargeCard(alerts), backoff=Fixed(0.01))  # max_retries from the settings: 2


async def main() -> None:
    service = JobService(app)
    jobs = [
        await service.create_job(
            "email.send", {"to": "ada@example.com", "template": "welcome", "name": "Ada"}
        ),
        await service.create_job("email.send", {"to": "bob@example.com", "template": "gone"}),
        await service.create_job("payment.charge", {"order": "A-17"}, created_by="checkout"),
    ]
    stats = await app.worker(concurrency=2).run(burst=True)
    for job in jobs:
        final = await service.get_job(job.id)
        assert final is not None
        outcome = final.result.value if final.result and final.result.success else final.error
        print(f"{final.task:<15} {final.status.value:<12} attempts={final.attempts}  {outcome}")
    for dead in await app.broker.dead_letters("default"):
        print(f"dead letter: {dead.task} {dead.kwargs} {dead.error_type}: {dead.error}")
    for alert in alerts:
        print(f"alert: {alert}")
    print(f"sent: {mailer.sent}")
    print(f"worker: {stats}")


if __name__ == "__main__":
    anyio.run(main)
