"""The dashboard on a ``SqliteBroker`` (a file of the test's own): the overview counts what
the broker counted (its per-minute counts feed the chart and the run-time quantiles), and the
jobs list shows each state and walks a listing page by page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from taskit.broker.sqlite import SqliteBroker
from taskit.dashboard import dashboard
from tests.dashboard._site import Site, make_app


class SqliteSite(Site):
    """A ``Site`` whose App's broker is a ``SqliteBroker`` on ``path``."""

    def __init__(self, path: Path) -> None:
        self.app = make_app()
        self.app.broker = SqliteBroker(path, result_ttl=3600.0)
        self.web = dashboard(self.app)
        self.client = TestClient(self.web, base_url="http://dash.test")

    @property
    def broker(self) -> SqliteBroker:  # type: ignore[override]
        broker = self.app.broker
        assert isinstance(broker, SqliteBroker)
        return broker


@pytest.fixture
def site(tmp_path: Path) -> Iterator[SqliteSite]:
    with SqliteSite(tmp_path / "dash.sqlite3") as made:
        try:
            yield made
        finally:
            made.run(made.broker.close)


def ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job-id="([^"]+)"', html)


def test_the_overview_and_the_jobs_pages_render_on_sqlite(site: SqliteSite) -> None:
    queued = site.enqueue(1, 2)
    later = site.enqueue(7, 8, delay=3600)
    done = site.completed(40, 2)
    dead = site.dead(3, 4)

    data = site.client.get("/api/overview").json()
    assert (data["stats"]["queued"], data["stats"]["dead"], data["stats"]["completed"]) == (
        "1",
        "1",
        "1",
    )
    assert data["stats"]["p50"] != "-"  # the runs were counted in this minute's histogram
    assert sum(p["completed"] for p in data["chart"]) == 1
    overview = site.client.get("/")
    assert overview.status_code == 200
    assert '<span class="value" data-stat="queued">1</span>' in overview.text

    assert ids(site.client.get("/jobs").text) == [queued.id]
    assert ids(site.client.get("/jobs?state=scheduled").text) == [later.id]
    assert ids(site.client.get("/jobs?state=completed&queue=default").text) == [done.id]
    assert ids(site.client.get("/jobs?state=dead").text) == [dead.id]
    assert ids(site.client.get("/jobs?state=scheduled&q=7").text) == [later.id]
    assert site.client.get(f"/jobs/{done.id}").status_code == 200


def test_the_next_page_links_walk_a_sqlite_listing_once(site: SqliteSite) -> None:
    made = {site.enqueue(i, i).id for i in range(60)}
    seen: list[str] = []
    url = "/jobs?state=queued"
    while url:
        html = site.client.get(url).text
        seen += ids(html)
        found = re.search(r'<a data-testid="next-page" href="([^"]+)"', html)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(made)
