"""The dashboard's actions, clicked in Chromium, change the broker's state on the real Redis:
requeue, cancel, promote and delete a job; pause, resume and purge a queue (purge only once
confirmed); requeue and delete dead letters by selection and by filter. Each waits for the
flash message (the action's reply) and then reads the broker."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from taskit import JobStatus
from tests.browser._seed import Seeder
from tests.browser.conftest import Dash

pytestmark = pytest.mark.redis


def click(dash: Dash, selector: str) -> str:
    """Click the button, wait for the action's reply in the flash area; its text. The reply
    must be a success (the flash's ``ok`` class)."""
    dash.page.locator(selector).click()
    flash = dash.page.locator("[data-testid=flash]")
    expect(flash).to_have_text(re.compile(r"\S"))
    text = flash.inner_text()
    assert "ok" in (flash.get_attribute("class") or "").split(), f"the action failed: {text}"
    return text


def test_requeue_a_dead_letter_from_its_page(dash: Dash, seed: Seeder) -> None:
    job = seed.dead(1)[0]
    dash.open(f"/jobs/{job.id}")
    click(dash, "button[data-action=requeue]")
    assert seed.status(job.id) is JobStatus.PENDING
    assert dash.errors == []


def test_cancel_a_waiting_job(dash: Dash, seed: Seeder) -> None:
    job = seed.enqueue(1)[0]
    dash.open(f"/jobs/{job.id}")
    click(dash, "button[data-action=cancel]")
    assert seed.status(job.id) is JobStatus.CANCELLED
    expect(dash.page.locator("[data-testid=job-status]")).to_have_text(
        re.compile("cancelled", re.I)
    )
    assert dash.errors == []


def test_promote_a_scheduled_job_and_delete_a_finished_one(dash: Dash, seed: Seeder) -> None:
    scheduled, completed = seed.scheduled(1)[0], seed.completed(1)[0]
    dash.open(f"/jobs/{scheduled.id}")
    click(dash, "button[data-action=promote]")
    assert seed.status(scheduled.id) is JobStatus.PENDING
    dash.open(f"/jobs/{completed.id}")
    click(dash, "button[data-action=delete]")
    assert seed.get(completed.id) is None
    expect(dash.page.locator("[data-testid=job-status]")).to_have_text("deleted")
    assert dash.errors == []


def test_pause_and_resume_a_queue(dash: Dash, seed: Seeder) -> None:
    seed.enqueue(2)
    dash.open("/queues")
    row = dash.page.locator("tr[data-queue=default]")
    click(dash, "tr[data-queue=default] button[data-action=pause]")
    assert seed.call(seed.broker.paused_queues) == {"default"}
    expect(row).to_have_attribute("data-paused", "true")
    click(dash, "tr[data-queue=default] button[data-action=resume]")
    assert seed.call(seed.broker.paused_queues) == set()
    expect(row).to_have_attribute("data-paused", "false")
    assert dash.errors == []


def test_purge_asks_first_and_a_cancel_changes_nothing(dash: Dash, seed: Seeder) -> None:
    jobs = seed.enqueue(3)
    dash.open("/queues")
    dash.accept = False
    with dash.page.expect_event("dialog"):
        dash.page.locator("tr[data-queue=default] button[data-action=purge]").click()
    assert len(dash.dialogs) == 1, dash.dialogs
    assert seed.call(seed.broker.stats)["default"].queued == 3
    dash.accept = True
    click(dash, "tr[data-queue=default] button[data-action=purge]")
    assert len(dash.dialogs) == 2
    assert seed.call(seed.broker.stats)["default"].queued == 0
    assert all(seed.status(job.id) in (None, JobStatus.CANCELLED) for job in jobs)
    assert dash.errors == []


def test_bulk_requeue_of_selected_dead_letters(dash: Dash, seed: Seeder) -> None:
    dead = seed.dead(3)
    dash.open("/dead?queue=default")
    for job in dead[:2]:
        dash.page.locator(f"input[type=checkbox][data-select='{job.id}']").check()
    click(dash, "button[data-action=requeue-selected]")
    assert [seed.status(job.id) for job in dead] == [
        JobStatus.PENDING, JobStatus.PENDING, JobStatus.DEAD_LETTER,
    ]  # fmt: skip
    assert dash.errors == []


def test_bulk_delete_of_selected_dead_letters(dash: Dash, seed: Seeder) -> None:
    dead = seed.dead(2)
    dash.open("/dead?queue=default")
    dash.page.locator(f"input[type=checkbox][data-select='{dead[0].id}']").check()
    click(dash, "button[data-action=delete-selected]")
    assert seed.get(dead[0].id) is None
    assert seed.status(dead[1].id) is JobStatus.DEAD_LETTER
    assert dash.errors == []


def test_requeue_matching_a_filter_asks_and_spares_the_rest(dash: Dash, seed: Seeder) -> None:
    emails = seed.dead(2, task="shop.send_email")
    resizes = seed.dead(2)
    dash.open("/dead?queue=default&task=shop.send_email")
    expect(dash.page.locator("tr[data-job-id]")).to_have_count(2)
    click(dash, "button[data-action=requeue-matching]")
    assert dash.dialogs, "requeue-matching did not ask for confirmation"
    assert {seed.status(job.id) for job in emails} == {JobStatus.PENDING}
    assert {seed.status(job.id) for job in resizes} == {JobStatus.DEAD_LETTER}
    assert dash.errors == []


def test_delete_matching_every_dead_letter(dash: Dash, seed: Seeder) -> None:
    dead = seed.dead(3)
    dash.open("/dead?queue=default")
    click(dash, "button[data-action=delete-matching]")
    assert dash.dialogs, "delete-matching did not ask for confirmation"
    assert [seed.get(job.id) for job in dead] == [None, None, None]
    assert seed.call(seed.broker.stats)["default"].dead == 0
    assert dash.errors == []


def test_an_action_without_the_csrf_token_is_refused(dash: Dash, seed: Seeder) -> None:
    job = seed.dead(1)[0]
    dash.open(f"/jobs/{job.id}")  # the page sets the CSRF cookie; the header is left out
    reply = dash.page.request.post(dash.url(f"/actions/jobs/{job.id}/requeue"), data={})
    assert reply.status == 403
    assert seed.status(job.id) is JobStatus.DEAD_LETTER
