"""The pages render what the broker holds, per the DOM contract (docs/dashboard.md), each with
``Server-Timing``; the jobs list filters, searches by id and pages across queues."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape

import pytest

from taskit.errors import BrokerConnectionError
from taskit.job import OutcomeKind, Progress, ProgressUpdate
from tests.dashboard._site import CSRF, Site

PAGES = {
    "/": "overview", "/queues": "queues", "/jobs": "jobs", "/dead": "dead",
    "/workers": "workers", "/schedules": "schedules", "/limits": "limits",
    "/workflows": "workflows", "/progress": "progress",
}  # fmt: skip


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as site:
        yield site


def ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job-id="([^"]+)"', html)


@pytest.mark.parametrize(("path", "page"), sorted(PAGES.items()))
def test_each_page_renders_with_its_name_nav_and_server_timing(
    site: Site, path: str, page: str
) -> None:
    site.enqueue(1, 2)
    site.dead(3, 4)
    response = site.client.get(path)
    assert response.status_code == 200
    assert f'<body data-page="{page}"' in response.text
    assert re.fullmatch(r"app;dur=\d+\.\d", response.headers["server-timing"])
    for name in PAGES.values():
        assert f'data-nav="{name}"' in response.text
    assert 'data-testid="flash"' in response.text
    assert 'data-testid="live-status"' in response.text
    assert re.search(r'<meta name="csrf-token" content="[0-9a-f]{64}">', response.text)


def test_static_assets_are_served_from_the_package(site: Site) -> None:
    js = site.client.get("/static/dashboard.js")
    assert js.status_code == 200
    assert "EventSource" in js.text
    assert "server-timing" in js.headers
    assert site.client.get("/static/dashboard.css").status_code == 200


def test_overview_counts_the_broker_and_runs_quantiles(site: Site) -> None:
    site.enqueue(1, 2)
    site.dead(3, 4)
    site.completed(5, 6)
    data = site.client.get("/api/overview").json()
    assert data["stats"]["queued"] == "1"
    assert data["stats"]["dead"] == "1"
    assert data["stats"]["completed"] == "1"
    assert data["stats"]["p50"] != "-"  # a run was counted in this minute's histogram
    assert sum(p["completed"] for p in data["chart"]) == 1
    assert sum(p["failed"] for p in data["chart"]) == 1  # the dead letter: a failure
    assert len(data["chart"]) == 60
    html = site.client.get("/").text
    assert '<span class="value" data-stat="queued">1</span>' in html
    assert 'data-testid="chart"' in html
    for stat in ("running", "scheduled", "workers", "failed", "p99"):
        assert f'data-stat="{stat}"' in html


def test_queues_show_counts_and_paused_state(site: Site) -> None:
    site.enqueue(1, 2, queue="low")
    site.enqueue(1, 2, queue="low")
    site.dead(3, 4, queue="high")
    site.run(lambda: site.broker.pause_queue("low"))
    html = site.client.get("/queues").text
    low = html[html.index('data-queue="low"') :]
    assert low.startswith('data-queue="low" data-paused="true"')
    assert '<td class="num" data-count="queued">2</td>' in low
    assert 'data-action="resume"' in low.split("</tr>")[0]
    high = html[html.index('data-queue="high"') :]
    assert high.startswith('data-queue="high" data-paused="false"')
    assert '<td class="num" data-count="dead">1</td>' in high
    assert 'data-action="pause"' in high.split("</tr>")[0]
    assert 'data-action="purge"' in high.split("</tr>")[0]


def test_jobs_list_by_state_task_and_text(site: Site) -> None:
    queued = site.enqueue(1, 2)
    later = site.enqueue(7, 8, delay=3600)
    done = site.completed(40, 2)
    assert ids(site.client.get("/jobs").text) == [queued.id]
    assert ids(site.client.get("/jobs?state=scheduled").text) == [later.id]
    assert ids(site.client.get("/jobs?state=completed&queue=default").text) == [done.id]
    assert ids(site.client.get("/jobs?state=queued&task=tick").text) == []
    assert ids(site.client.get("/jobs?state=scheduled&q=7").text) == [later.id]
    assert site.client.get("/jobs?state=nonsense").status_code == 400


def test_a_search_for_a_job_id_opens_its_page(site: Site) -> None:
    job = site.enqueue(1, 2)
    response = site.client.get(f"/jobs?q={job.id}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{job.id}"


def test_the_next_page_links_walk_every_queue_once(site: Site) -> None:
    made = {site.enqueue(i, i, queue=q).id for q in ("a", "b", "c") for i in range(22)}
    seen: list[str] = []
    url = "/jobs?state=queued"
    pages = 0
    while url:
        html = site.client.get(url).text
        seen += ids(html)
        found = re.search(r'<a data-testid="next-page" href="([^"]+)"', html)
        url = found.group(1).replace("&amp;", "&") if found else ""
        pages += 1
    assert sorted(seen) == sorted(made)
    assert pages == 2  # 50 + 16


def test_a_bad_cursor_is_a_clear_error(site: Site) -> None:
    response = site.client.get("/jobs?cursor=garbage")
    assert response.status_code == 400
    assert "bad cursor" in response.text


def test_the_job_page_shows_everything_and_only_the_actions_that_apply(site: Site) -> None:
    dead = site.dead(3, 4)
    html = site.client.get(f"/jobs/{dead.id}").text
    assert '<span data-testid="job-status" class="status-dead_letter">dead_letter</span>' in html
    shown = unescape(html[html.index('data-testid="job-args">') :].split("</pre>")[0])
    assert json.loads(shown.split(">", 1)[1]) == {"args": [3, 4], "kwargs": {}}
    assert 'data-testid="job-error">ValueError: boom</pre>' in html
    assert 'data-testid="job-traceback"' in html
    assert 'data-testid="job-attempts">1 of 4</dd>' in html
    assert 'data-testid="job-progress"' in html
    actions = re.findall(r'data-action="(\w+)"', html)
    assert actions == ["requeue", "delete"]
    done = site.completed(40, 2)
    assert 'data-testid="job-result">42</pre>' in site.client.get(f"/jobs/{done.id}").text
    later = site.enqueue(1, 1, delay=3600)
    assert re.findall(r'data-action="(\w+)"', site.client.get(f"/jobs/{later.id}").text) == [
        "cancel", "promote",
    ]  # fmt: skip
    assert site.client.get("/jobs/unknown-id").status_code == 404


def test_dead_letters_have_checkboxes_and_bulk_buttons(site: Site) -> None:
    dead = [site.dead(i, i) for i in range(3)]
    html = site.client.get("/dead").text
    assert ids(html) == [j.id for j in reversed(dead)]  # newest first
    for job in dead:
        assert f'data-select="{job.id}"' in html
    for action in ("requeue-selected", "delete-selected", "requeue-matching", "delete-matching"):
        assert f'data-action="{action}"' in html


def test_workers_show_what_each_runs_and_since_when(site: Site) -> None:
    job = site.running(1, 2)
    site.worker("w-1", [job])
    html = site.client.get("/workers").text
    row = html[html.index('<tr data-worker="w-1">') :].split("</tr>")[0]
    assert "host-1" in row
    assert "4242" in row
    assert "default, low" in row
    assert f'data-running-job="{job.id}"' in row
    assert "since " in row


def test_schedules_limits_workflows_and_progress(site: Site) -> None:
    html = site.client.get("/schedules").text
    assert '<tr data-schedule="hourly">' in html
    assert 'data-testid="next-run"' in html
    site.limit("api", 3)
    assert '<tr data-limit="api">' in site.client.get("/limits").text
    job = site.running(1, 2)
    assert f'data-progress-job="{job.id}"' in site.client.get("/progress").text


def test_progress_shows_each_running_jobs_latest_report(site: Site) -> None:
    job = site.enqueue(1, 2)
    lease = site.take(job)
    report = Progress(updated_at=datetime.now(UTC), fraction=0.4, message="rows")
    update = ProgressUpdate(job.id, lease.token, report)
    assert site.run(lambda: site.broker.set_progress([update])) == [True]
    assert (
        f'<span data-progress-job="{job.id}">40% rows</span>' in site.client.get("/progress").text
    )
    page = site.client.get(f"/jobs/{job.id}").text
    assert re.search(r'data-testid="job-progress" data-progress-job="[^"]+">40% rows</dd>', page)
    running = site.client.get("/api/overview").json()["running"]
    assert [(r["id"], r["percent"], r["message"]) for r in running] == [(job.id, 40, "rows")]


def test_a_workflow_is_a_tree_of_nodes_with_their_status(site: Site) -> None:
    from taskit import chain

    add = site.app.get_task("add")
    flow = site.run(lambda: chain(add.s(1, 2), add.s(3, 4)).enqueue())
    html = site.client.get(f"/workflows/{flow.id}").text
    nodes = re.findall(r'data-node="([^"]+)" data-status="(\w+)"', html)
    assert [status for _, status in nodes] == ["pending", "deferred"]
    listed = site.client.get("/workflows").text
    assert f'data-workflow="{flow.id}"' in listed
    response = site.client.get(f"/workflows?id={flow.id}", follow_redirects=False)
    assert response.headers["location"] == f"/workflows/{flow.id}"
    assert site.client.get("/workflows/nope").status_code == 404


def test_mounted_under_a_path_links_carry_it() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    site = Site()
    outer = Starlette(routes=[Mount("/ops/taskit", app=site.web)])
    with TestClient(outer) as client:
        html = client.get("/ops/taskit/queues").text
        assert 'href="/ops/taskit/static/dashboard.css"' in html
        assert 'data-nav="jobs" href="/ops/taskit/jobs"' in html
        assert client.get("/ops/taskit/static/dashboard.js").status_code == 200


def test_a_failed_job_is_listed_as_failed(site: Site) -> None:
    failed = site.settle(site.enqueue(1, 2), OutcomeKind.FAIL, error="nope")
    assert ids(site.client.get("/jobs?state=failed").text) == [failed.id]


def test_a_broker_that_fails_is_a_503_saying_so(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def down(*args: object) -> None:
        raise BrokerConnectionError("redis at 10.0.0.1:6379 refused the connection")

    monkeypatch.setattr(site.broker, "stats", down)
    page = site.client.get("/queues")
    assert page.status_code == 503
    assert "the broker cannot be reached: BrokerConnectionError" in page.text
    monkeypatch.setattr(site.broker, "pause_queue", down)
    reply = site.client.post("/actions/queues/default/pause", json={}, headers={
        "X-CSRF-Token": token_from(site.client.get("/workers").text)})  # fmt: skip
    assert reply.status_code == 503
    assert reply.json()["ok"] is False
    assert "the broker failed" in caplog.text


def token_from(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None
    return found.group(1)
