"""Every page of the dashboard loads in Chromium against the real Redis holding jobs in every
state, shows them per the DOM contract (docs/dashboard.md), and logs no console error.

One seeded prefix and one server for the module: these tests only read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from anyio.from_thread import BlockingPortal
from playwright.sync_api import Browser, expect

from taskit.broker.browse import Listing
from taskit.dashboard.pages import PAGE
from taskit.job import Job, Lease
from tests.browser._app import SCHEDULE
from tests.browser.conftest import Dash, dashboard_of, open_dash, seeding

pytestmark = pytest.mark.redis


@dataclass(frozen=True)
class World:
    """The seeded jobs, by state, and the base URL of their dashboard."""

    base: str
    queued: list[Job]
    scheduled: list[Job]
    retrying: list[Job]
    running: list[Lease]
    completed: list[Job]
    failed: list[Job]
    cancelled: list[Job]
    dead: list[Job]
    workflow: str
    nodes: list[str]
    #: More completed jobs than a page holds, on queue "bulk".
    bulk: list[Job]

    def ids(self, listing: Listing) -> set[str]:
        """The ids of the jobs seeded into ``listing`` on queue "default"."""
        if listing is Listing.QUEUED:
            return {job.id for job in self.queued} | {self.nodes[0]}
        if listing is Listing.DEFERRED:
            return {self.nodes[1]}
        if listing is Listing.RUNNING:
            return set()  # the running jobs are on "emails"
        jobs: list[Job] = getattr(self, listing.value)
        return {job.id for job in jobs}


@pytest.fixture(scope="module")
def world(redis_url: str, portal: BlockingPortal) -> Iterator[World]:
    with seeding(portal, redis_url) as seed:
        # Whatever is reserved is seeded first: a reserve takes the queue's ready jobs.
        running = seed.running(2, queue="emails", task="shop.send_email")
        seed.progress(running[0], 0.4, "sent 40 of 100")
        seed.worker("worker-1", running, queues=["emails", "default"])
        seed.limit("api", 5)
        bulk = seed.completed(PAGE + 10, queue="bulk")
        world = World(
            base="", retrying=seed.retrying(1), running=running, completed=seed.completed(3),
            failed=seed.failed(1), dead=seed.dead(2), queued=seed.enqueue(3),
            scheduled=seed.scheduled(1), cancelled=seed.cancelled(1), bulk=bulk,
            workflow="", nodes=[],
        )  # fmt: skip
        workflow, nodes = seed.workflow()
        world = replace(world, workflow=workflow, nodes=nodes)
        with dashboard_of(seed) as base:
            yield replace(world, base=base)


@pytest.fixture(scope="module")
def reader(world: World, browser: Browser) -> Iterator[Dash]:
    """One tab for the module's tests: they only read."""
    dash = open_dash(browser, world.base)
    yield dash
    dash.page.context.close()


@pytest.fixture
def page(reader: Dash) -> Iterator[Dash]:
    """The module's tab; the test must leave no console error in it."""
    reader.errors.clear()
    yield reader
    assert reader.errors == [], f"console errors: {reader.errors}"


def stat(dash: Dash, name: str, value: int) -> None:
    """The overview's ``[data-stat=name]`` shows ``value`` (as a whole word)."""
    expect(dash.page.locator(f"[data-stat={name}]")).to_have_text(re.compile(rf"\b{value}\b"))


PAGES = {
    "/": "overview", "/queues": "queues", "/jobs": "jobs", "/dead": "dead",
    "/workers": "workers", "/schedules": "schedules", "/limits": "limits",
    "/workflows": "workflows", "/progress": "progress",
}  # fmt: skip


@pytest.mark.parametrize(("path", "name"), PAGES.items())
def test_each_page_loads_with_its_nav(page: Dash, path: str, name: str) -> None:
    page.open(path)
    expect(page.page.locator("body")).to_have_attribute("data-page", name)
    for other in PAGES.values():
        expect(page.page.locator(f"a[data-nav={other}]")).to_have_count(1)


def test_overview_shows_the_counts_and_the_chart_live(page: Dash, world: World) -> None:
    page.open("/")
    expect(page.page.locator("[data-testid=live-status]")).to_have_text("live")
    stat(page, "queued", len(world.queued) + 1)  # the workflow's first node is ready too
    stat(page, "running", len(world.running))
    stat(page, "dead", len(world.dead))
    stat(page, "workers", 1)
    chart = page.page.locator("[data-testid=chart]")
    expect(chart).to_be_visible()
    expect(page.page.locator("svg[data-testid=chart], [data-testid=chart] svg")).to_have_count(1)


def test_queues_shows_each_queues_counts(page: Dash, world: World) -> None:
    page.open("/queues")
    default = page.page.locator("tr[data-queue=default]")
    expect(default).to_have_attribute("data-paused", "false")
    counts = {"queued": len(world.queued) + 1, "completed": len(world.completed),
              "failed": len(world.failed), "dead": len(world.dead), "deferred": 1}  # fmt: skip
    for count, n in counts.items():
        expect(default.locator(f"td[data-count={count}]")).to_have_text(re.compile(rf"\b{n}\b"))
    emails = page.page.locator("tr[data-queue=emails]")
    expect(emails.locator("td[data-count=running]")).to_have_text(re.compile(r"\b2\b"))
    for action in ("pause", "purge"):
        expect(default.locator(f"button[data-action={action}]")).to_have_count(1)


@pytest.mark.parametrize("listing", [x for x in Listing if x is not Listing.RUNNING])
def test_jobs_lists_each_state(page: Dash, world: World, listing: Listing) -> None:
    page.open(f"/jobs?queue=default&state={listing.value}")
    rows = page.page.locator("tr[data-job-id]")
    expected = world.ids(listing)
    expect(rows).to_have_count(len(expected))
    assert {rows.nth(i).get_attribute("data-job-id") for i in range(len(expected))} == expected


def test_jobs_lists_running_jobs(page: Dash, world: World) -> None:
    page.open("/jobs?queue=emails&state=running")
    for lease in world.running:
        expect(page.page.locator(f"tr[data-job-id='{lease.job.id}']")).to_have_count(1)


def test_jobs_pages_follow_the_cursor(page: Dash, world: World) -> None:
    page.open("/jobs?queue=bulk&state=completed")
    rows = page.page.locator("tr[data-job-id]")
    expect(rows).to_have_count(PAGE)
    first = {rows.nth(i).get_attribute("data-job-id") for i in range(PAGE)}
    page.page.locator("a[data-testid=next-page]").click()
    expect(rows).to_have_count(len(world.bulk) - PAGE)
    second = {rows.nth(i).get_attribute("data-job-id") for i in range(len(world.bulk) - PAGE)}
    assert first | second == {job.id for job in world.bulk}
    assert not first & second
    expect(page.page.locator("a[data-testid=next-page]")).to_have_count(0)


def test_jobs_search_by_argument_text_and_task(page: Dash, world: World) -> None:
    page.open("/jobs?queue=default&state=completed")
    form = page.page.locator("form:has(input[name=q])")
    form.locator("input[name=q]").fill("/img/1.png")
    form.locator("input[name=q]").press("Enter")
    expect(page.page.locator("tr[data-job-id]")).to_have_count(1)
    expect(page.page.locator(f"tr[data-job-id='{world.completed[1].id}']")).to_have_count(1)
    page.open("/jobs?queue=default&state=completed&task=shop.send_email")
    expect(page.page.locator("tr[data-job-id]")).to_have_count(0)


def test_jobs_search_by_id_opens_the_jobs_page(page: Dash, world: World) -> None:
    job = world.failed[0]
    page.open(f"/jobs?q={job.id}")
    expect(page.page.locator("body")).to_have_attribute("data-page", "job")
    expect(page.page.locator("[data-testid=job-status]")).to_have_text(re.compile("failed", re.I))


def test_job_page_of_a_failed_job(page: Dash, world: World) -> None:
    job = world.failed[0]
    page.open(f"/jobs/{job.id}")
    locate = page.page.locator
    expect(locate("[data-testid=job-status]")).to_have_text(re.compile("failed", re.I))
    expect(locate("[data-testid=job-args]")).to_contain_text("/img/0.png")
    expect(locate("[data-testid=job-error]")).to_contain_text("image is too small")
    expect(locate("[data-testid=job-traceback]")).to_contain_text("ValueError: image is too")
    expect(locate("[data-testid=job-attempts]")).to_contain_text("1")
    expect(locate("button[data-action=requeue]")).to_have_count(1)
    expect(locate("button[data-action=cancel]")).to_have_count(0)


def test_job_page_of_a_completed_and_a_running_job(page: Dash, world: World) -> None:
    page.open(f"/jobs/{world.completed[2].id}")
    locate = page.page.locator
    expect(locate("[data-testid=job-status]")).to_have_text(re.compile("completed", re.I))
    expect(locate("[data-testid=job-result]")).to_contain_text("/img/2.png")
    page.open(f"/jobs/{world.running[0].job.id}")
    expect(locate("[data-testid=job-status]")).to_have_text(re.compile("running", re.I))
    expect(locate("[data-testid=job-progress]")).to_contain_text("40%")
    expect(locate("[data-testid=job-progress]")).to_contain_text("sent 40 of 100")
    expect(locate("button[data-action=cancel]")).to_have_count(1)


def test_dead_letters_list_with_checkboxes(page: Dash, world: World) -> None:
    page.open("/dead?queue=default")
    for job in world.dead:
        row = page.page.locator(f"tr[data-job-id='{job.id}']")
        expect(row.locator(f"input[type=checkbox][data-select='{job.id}']")).to_have_count(1)
    expect(page.page.locator("tr[data-job-id]")).to_have_count(len(world.dead))
    for action in ("requeue-selected", "delete-selected", "requeue-matching", "delete-matching"):
        expect(page.page.locator(f"button[data-action={action}]")).to_have_count(1)


def test_workers_show_what_each_runs(page: Dash, world: World) -> None:
    page.open("/workers")
    row = page.page.locator("tr[data-worker=worker-1]")
    expect(row).to_contain_text("emails")
    for lease in world.running:
        expect(row.locator(f"[data-running-job='{lease.job.id}']")).to_have_count(1)


def test_schedules_limits_and_workflows(page: Dash, world: World) -> None:
    page.open("/schedules")
    expect(page.page.locator(f"tr[data-schedule='{SCHEDULE}']")).to_have_count(1)
    page.open("/limits")
    expect(page.page.locator("tr[data-limit=api]")).to_contain_text("5")
    page.open(f"/workflows/{world.workflow}")
    first, second = world.nodes
    expect(page.page.locator(f"[data-node='{first}']")).to_have_attribute("data-status", "pending")
    expect(page.page.locator(f"[data-node='{second}']")).to_have_attribute(
        "data-status", "deferred"
    )
    page.open(f"/workflows?id={world.workflow}")
    expect(page.page.locator(f"[data-node='{first}']")).to_have_count(1)


def test_progress_shows_running_jobs_progress(page: Dash, world: World) -> None:
    page.open("/progress")
    row = page.page.locator(f"[data-progress-job='{world.running[0].job.id}']")
    expect(row).to_contain_text("40%")
    expect(row).to_contain_text("sent 40 of 100")
