"""How to test your own taskit code: taskit.testing's harness, eager mode and fake clock.

    pytest examples/test_example_app.py

These tests exercise the handlers of examples/handlers.py. The `taskit_harness` fixture comes with
taskit (a pytest plugin loaded automatically): it swaps the App's broker for an in-memory one
for the duration of the test. Async tests use anyio's pytest plugin (installed with anyio).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from examples import handlers
from examples.handlers import app
from taskit import JobService, JobStatus
from taskit.testing import Harness

pytestmark = pytest.mark.anyio

OpenHarness = Callable[..., Harness]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def fresh_state() -> None:
    handlers.alerts.clear()
    handlers.mailer.failures = 2
    handlers.mailer.sent.clear()


async def test_a_transient_failure_is_retried_until_the_mail_goes_out(
    taskit_harness: OpenHarness,
) -> None:
    harness = taskit_harness(app)
    job = await JobService(app).create_job(
        "email.send", {"to": "ada@example.com", "template": "welcome", "name": "Ada"}
    )
    assert [j.task for j in await harness.jobs()] == ["email.send"]  # enqueued, not yet run

    stats = await harness.drain()  # runs it, and its retries, without real waiting

    assert (stats.completed, stats.retried) == (1, 2)
    done = await app.get_job(job.id)
    assert done is not None
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 3)
    assert handlers.mailer.sent == ["ada@example.com: Welcome, Ada!"]
    assert len(handlers.alerts) == 2  # on_failure saw both failures


async def test_an_unknown_template_fails_at_once(taskit_harness: OpenHarness) -> None:
    taskit_harness(app, eager=True)  # eager: every enqueue runs its job before returning
    job = await JobService(app).create_job("email.send", {"to": "b@x.org", "template": "nope"})
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert handlers.alerts == []  # a returned failure is not an exception: no on_failure


async def test_a_charge_that_never_works_is_dead_lettered(taskit_harness: OpenHarness) -> None:
    harness = taskit_harness(app)
    started = harness.clock.time()
    await JobService(app).create_job("payment.charge", {"order": "A-1"})
    await harness.drain()
    [dead] = await harness.jobs(status=JobStatus.DEAD_LETTER)
    assert dead.kwargs == {"order": "A-1"}
    assert dead.error_type == "TimeoutError"
    assert handlers.alerts == ["payment.charge dead-lettered after 3 attempts"]
    assert harness.clock.time() - started == pytest.approx(0.02)  # two Fixed(0.01) backoffs


async def test_a_job_scheduled_for_tomorrow_runs_when_the_clock_gets_there(
    taskit_harness: OpenHarness,
) -> None:
    harness = taskit_harness(app)
    await JobService(app).create_job(
        "email.send",
        {"to": "c@x.org", "template": "welcome", "name": "C"},
        scheduled_at=harness.now() + timedelta(days=1),
    )
    handlers.mailer.failures = 0
    harness.advance(3600)
    assert await harness.jobs(status=JobStatus.COMPLETED) == []
    await harness.drain()  # moves the fake clock to the due time
    assert handlers.mailer.sent == ["c@x.org: Welcome, C!"]
