"""Who may see and act: HTTP basic auth refuses a browser without credentials (401, the
challenge) or with wrong ones, pages and assets alike, and lets the right ones in; an auth hook
refusing answers 403; read-only mode renders no action button and refuses actions."""

from __future__ import annotations

import pytest
from playwright.sync_api import Request, expect
from starlette.requests import Request as StarletteRequest

from taskit import JobStatus
from tests.browser._seed import Seeder
from tests.browser.conftest import Serve, Tab

pytestmark = pytest.mark.redis

USER, PASSWORD = "ops", "correct horse"


def test_basic_auth_refuses_without_credentials_and_admits_with_them(
    serve_dashboard: Serve, tab: Tab, seed: Seeder
) -> None:
    seed.dead(1)
    base = serve_dashboard(basic_auth=(USER, PASSWORD))
    admitted = tab(base, http_credentials={"username": USER, "password": PASSWORD})
    assets: list[str] = []

    def asset(request: Request) -> None:
        if request.resource_type in ("script", "stylesheet"):
            assets.append(request.url)

    admitted.page.on("request", asset)
    admitted.open("/dead")
    expect(admitted.page.locator("tr[data-job-id]")).to_have_count(1)
    expect(admitted.page.locator("[data-testid=live-status]")).to_have_text("live")
    assert admitted.errors == []
    assert assets, "the page loaded no script or stylesheet"

    anonymous = tab(base)
    for path in ["/", "/dead", "/api/overview", *assets]:
        reply = anonymous.page.request.get(path if path.startswith("http") else base + path)
        assert reply.status == 401, path
        assert reply.headers["www-authenticate"] == 'Basic realm="taskit"'

    wrong = tab(base, http_credentials={"username": USER, "password": "wrong"})
    assert wrong.page.request.get(base + "/").status == 401


def test_an_auth_hook_that_refuses_answers_403(
    serve_dashboard: Serve, tab: Tab, seed: Seeder
) -> None:
    def team_ops(request: StarletteRequest) -> bool:
        return request.headers.get("x-team") == "ops"

    base = serve_dashboard(auth=team_ops)
    assert tab(base).page.request.get(base + "/queues").status == 403
    ops = tab(base, extra_http_headers={"x-team": "ops"})
    ops.open("/queues")
    assert ops.errors == []


def test_read_only_shows_no_buttons_and_refuses_actions(
    serve_dashboard: Serve, tab: Tab, seed: Seeder
) -> None:
    dead, waiting = seed.dead(1)[0], seed.enqueue(1)[0]
    dash = tab(serve_dashboard(read_only=True))
    for path in ["/queues", "/dead?queue=default", f"/jobs/{dead.id}", f"/jobs/{waiting.id}"]:
        dash.open(path)
        shown = "tr[data-queue], tr[data-job-id], [data-testid=job-status]"
        expect(dash.page.locator(shown).first).to_be_visible()  # what a button would act on
        expect(dash.page.locator("button[data-action]")).to_have_count(0)
    token = dash.page.locator("meta[name=csrf-token]").get_attribute("content") or ""
    reply = dash.page.request.post(
        dash.url(f"/actions/jobs/{dead.id}/requeue"), headers={"X-CSRF-Token": token}, data={}
    )
    assert reply.status == 403
    assert seed.status(dead.id) is JobStatus.DEAD_LETTER
    assert dash.errors == []
