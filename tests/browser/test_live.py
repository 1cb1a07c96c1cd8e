"""Live updates reach an open page without a reload: jobs enqueued by another client change the
overview's figures, a running job's progress changes on /progress. A marker set on the page's
``window`` before the change is still there after it: the page was not reloaded."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser._seed import Seeder
from tests.browser.conftest import Dash

pytestmark = pytest.mark.redis

#: Seconds a live change may take to show (the stream sends an overview about every second).
LIVE = 10_000  # ms, Playwright's unit


def mark(dash: Dash) -> None:
    dash.page.evaluate("window.__notReloaded = true")


def still_marked(dash: Dash) -> bool:
    return bool(dash.page.evaluate("window.__notReloaded === true"))


def test_enqueued_jobs_show_on_the_overview_without_reload(dash: Dash, seed: Seeder) -> None:
    seed.enqueue(1)
    dash.open("/")
    expect(dash.page.locator("[data-testid=live-status]")).to_have_text("live")
    queued = dash.page.locator("[data-stat=queued]")
    expect(queued).to_have_text(re.compile(r"\b1\b"))
    mark(dash)
    seed.enqueue(4)
    seed.dead(2, queue="emails")  # not "default": its reserve would take the jobs above
    expect(queued).to_have_text(re.compile(r"\b5\b"), timeout=LIVE)
    expect(dash.page.locator("[data-stat=dead]")).to_have_text(re.compile(r"\b2\b"), timeout=LIVE)
    assert still_marked(dash)
    assert dash.errors == []


def test_progress_updates_without_reload(dash: Dash, seed: Seeder) -> None:
    lease = seed.running(1)[0]
    seed.progress(lease, 0.1, "started")
    dash.open("/progress")
    row = dash.page.locator(f"[data-progress-job='{lease.job.id}']")
    expect(row).to_contain_text("10%")
    mark(dash)
    seed.progress(lease, 0.4, "halfway there")
    expect(row).to_contain_text("40%", timeout=LIVE)
    expect(row).to_contain_text("halfway there")
    assert still_marked(dash)
    assert dash.errors == []


def test_a_job_that_starts_running_appears_on_progress(dash: Dash, seed: Seeder) -> None:
    dash.open("/progress")
    expect(dash.page.locator("[data-testid=live-status]")).to_have_text("live")
    mark(dash)
    lease = seed.running(1)[0]
    seed.progress(lease, 0.25, "a quarter")
    row = dash.page.locator(f"[data-progress-job='{lease.job.id}']")
    expect(row).to_contain_text("25%", timeout=LIVE)
    assert still_marked(dash)
    assert dash.errors == []
