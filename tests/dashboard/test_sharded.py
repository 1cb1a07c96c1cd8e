"""The dashboard on a sharded broker (three hash-tag shards on the real Redis, as ``?shards=3``
makes): counts add up over the shards, a pause holds on every shard, the dead letters of every
shard are listed, shown and requeued (by selection, and by a filter that walks the listing
across the shards), and the jobs list pages through every shard once. Each test puts jobs on
every shard (their ids choose it) before it looks."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from taskit.broker import from_url
from taskit.broker.browse import Listing
from taskit.broker.placement import shard_of
from taskit.broker.redis import RedisBroker
from taskit.broker.sharded import ShardedBroker
from taskit.dashboard import dashboard
from taskit.job import Job, JobStatus
from tests.dashboard._site import Site, make_app

pytestmark = pytest.mark.redis

SHARDS = 3


class ShardedSite(Site):
    """A ``Site`` whose App's broker is ``broker`` (a sharded one)."""

    def __init__(self, broker: ShardedBroker) -> None:
        self.app = make_app()
        self.app.broker = broker
        self.web = dashboard(self.app)
        self.client = TestClient(self.web, base_url="http://dash.test")

    @property
    def broker(self) -> ShardedBroker:  # type: ignore[override]
        broker = self.app.broker
        assert isinstance(broker, ShardedBroker)
        return broker

    def on_every_shard(self, make: str = "enqueue") -> list[Job]:
        """Jobs made by ``enqueue`` or ``dead`` until each shard holds one (at most 60): every
        job made, those of shard 0 first, then 1, then 2."""
        made: list[Job] = []
        for i in range(60):
            made.append(getattr(self, make)(i, i))
            if {shard_of(j.id, SHARDS) for j in made} == set(range(SHARDS)):
                return sorted(made, key=lambda j: shard_of(j.id, SHARDS))
        raise AssertionError("60 jobs reached only some shards")


@pytest.fixture
def site(redis_url: str) -> Iterator[ShardedSite]:
    broker = from_url(f"{redis_url}?prefix=dash-{uuid.uuid4().hex[:10]}&shards={SHARDS}")
    assert isinstance(broker, ShardedBroker)
    try:
        with ShardedSite(broker) as made:
            try:
                yield made
            finally:
                made.run(broker.close)  # on the loop its connections belong to
    finally:
        client = redis.Redis.from_url(redis_url)
        for shard in broker.shards:
            assert isinstance(shard, RedisBroker)
            doomed = list(client.scan_iter(match=shard.keys.pattern(), count=500))
            if doomed:
                client.delete(*doomed)
        client.close()


def ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job-id="([^"]+)"', html)


def test_counts_add_up_over_the_shards_and_a_pause_holds_on_each(site: ShardedSite) -> None:
    jobs = site.on_every_shard()
    assert site.client.get("/api/overview").json()["stats"]["queued"] == str(len(jobs))
    html = site.client.get("/queues").text
    assert f'<td class="num" data-count="queued">{len(jobs)}</td>' in html
    assert site.post("/actions/queues/default/pause").json()["ok"] is True
    for shard in site.broker.shards:
        assert site.run(shard.paused_queues) == {"default"}
        assert (
            site.run(lambda s=shard: s.reserve(["default"], count=100, lease=30, timeout=0)) == []
        )
    assert 'data-queue="default" data-paused="true"' in site.client.get("/queues").text
    assert site.post("/actions/queues/default/resume").json()["ok"] is True
    for shard in site.broker.shards:
        assert site.run(shard.paused_queues) == frozenset()
    reply = site.post("/actions/queues/default/purge").json()
    assert reply["count"] == len(jobs)


def test_dead_letters_of_every_shard_listed_shown_and_requeued(site: ShardedSite) -> None:
    dead = site.on_every_shard("dead")
    assert sorted(ids(site.client.get("/dead").text)) == sorted(j.id for j in dead)
    for job in dead:
        page = site.client.get(f"/jobs/{job.id}")
        assert page.status_code == 200
        assert job.id in page.text
    # By selection: the last job (of shard 2) and the first (of shard 0).
    chosen = [dead[-1].id, dead[0].id]
    reply = site.post("/actions/dead/default/requeue", {"ids": chosen}).json()
    assert reply["count"] == 2
    for job_id in chosen:
        found = site.run(lambda i=job_id: site.broker.get(i))
        assert found is not None
        assert found.status is JobStatus.PENDING
    # By a filter matching them all: the listing walked across the shards, page by page.
    rest = [j.id for j in dead if j.id not in chosen]
    reply = site.post("/actions/dead/default/requeue", {"all": True, "task": "add"}).json()
    assert reply["count"] == len(rest)
    page = site.run(lambda: site.broker.list_jobs("default", Listing.DEAD, limit=100))
    assert page.jobs == []


def test_the_jobs_list_pages_through_every_shard_once(site: ShardedSite) -> None:
    made = {site.enqueue(i, i).id for i in range(70)}
    assert {shard_of(job_id, SHARDS) for job_id in made} == set(range(SHARDS))
    seen: list[str] = []
    url = "/jobs?state=queued"
    while url:
        html = site.client.get(url).text
        seen += ids(html)
        found = re.search(r'<a data-testid="next-page" href="([^"]+)"', html)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert sorted(seen) == sorted(made)
