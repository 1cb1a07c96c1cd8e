"""Every action changes the broker's state and says so: queues (pause, resume, purge), one job
(cancel, promote, requeue, delete) and dead letters in bulk (by selection, by filter, all)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskit.broker.browse import Listing
from taskit.job import Job, JobStatus
from tests.dashboard._site import Site


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as site:
        yield site


def status(site: Site, job: Job) -> JobStatus | None:
    found = site.run(lambda: site.broker.get(job.id))
    return None if found is None else found.status


def dead_ids(site: Site, queue: str = "default") -> list[str]:
    page = site.run(lambda: site.broker.list_jobs(queue, Listing.DEAD, limit=100))
    return [j.id for j in page.jobs]


def test_pause_resume_and_purge_a_queue(site: Site) -> None:
    site.enqueue(1, 2)
    reply = site.post("/actions/queues/default/pause")
    assert reply.json() == {"ok": True, "message": "queue default paused"}
    assert site.run(site.broker.paused_queues) == {"default"}
    assert site.post("/actions/queues/default/resume").json()["message"] == "queue default resumed"
    assert site.run(site.broker.paused_queues) == set()
    reply = site.post("/actions/queues/default/purge").json()
    assert (reply["ok"], reply["count"]) == (True, 1)
    assert site.run(site.broker.stats)["default"].queued == 0
    assert site.post("/actions/queues/default/explode").status_code == 404


def test_cancel_promote_and_delete_a_job(site: Site) -> None:
    waiting = site.enqueue(1, 2)
    assert site.post(f"/actions/jobs/{waiting.id}/cancel").json()["ok"] is True
    assert status(site, waiting) is JobStatus.CANCELLED
    again = site.post(f"/actions/jobs/{waiting.id}/cancel")
    assert (again.status_code, again.json()["ok"]) == (409, False)
    later = site.enqueue(3, 4, delay=3600)
    assert site.post(f"/actions/jobs/{later.id}/promote").json()["ok"] is True
    assert status(site, later) is JobStatus.PENDING
    assert site.post(f"/actions/jobs/{waiting.id}/delete").json()["ok"] is True
    assert status(site, waiting) is None
    assert site.post("/actions/jobs/unknown/cancel").status_code == 404


def test_requeue_a_dead_letter_and_a_finished_job(site: Site) -> None:
    dead = site.dead(1, 2)
    assert site.post(f"/actions/jobs/{dead.id}/requeue").json()["ok"] is True
    assert status(site, dead) is JobStatus.PENDING
    done = site.completed(3, 4)
    reply = site.post(f"/actions/jobs/{done.id}/requeue").json()
    copy = site.run(lambda: site.broker.get(reply["job_id"]))
    assert copy is not None
    assert copy.id != done.id
    assert reply["message"] == f"job {done.id} enqueued again as {copy.id}"
    assert (copy.status, copy.task, copy.args, copy.attempts) == (
        JobStatus.PENDING,
        "add",
        (3, 4),
        0,
    )
    assert status(site, done) is JobStatus.COMPLETED  # the original is kept as it was
    waiting = site.enqueue(5, 6)
    assert site.post(f"/actions/jobs/{waiting.id}/requeue").status_code == 409


def test_dead_letters_by_selection(site: Site) -> None:
    dead = [site.dead(i, i) for i in range(4)]
    reply = site.post("/actions/dead/default/requeue", {"ids": [dead[0].id, dead[1].id]}).json()
    assert (reply["ok"], reply["count"]) == (True, 2)
    assert status(site, dead[0]) is JobStatus.PENDING
    reply = site.post("/actions/dead/default/delete", {"ids": [dead[2].id]}).json()
    assert reply["count"] == 1
    assert dead_ids(site) == [dead[3].id]
    assert site.post("/actions/dead/default/requeue", {"ids": "x"}).status_code == 400


def test_dead_letters_by_filter_and_all(site: Site) -> None:
    seven = [site.dead(7, i) for i in range(3)]
    others = [site.dead(1, i) for i in range(100, 103)]
    body = {"all": True, "task": "add", "q": "[7,"}
    reply = site.post("/actions/dead/default/requeue", body).json()
    assert reply["count"] == 3
    assert all(status(site, j) is JobStatus.PENDING for j in seven)
    assert sorted(dead_ids(site)) == sorted(j.id for j in others)
    reply = site.post("/actions/dead/default/delete", {"all": True, "q": "101"}).json()
    assert reply["count"] == 1
    assert status(site, others[1]) is None
    reply = site.post("/actions/dead/default/requeue", {"all": True}).json()
    assert reply["count"] == 2
    assert dead_ids(site) == []
    site.dead(9, 9)
    assert site.post("/actions/dead/default/delete", {"all": True}).json()["count"] == 1
    assert dead_ids(site) == []


def test_a_bad_body_is_refused(site: Site) -> None:
    token = site.token()
    headers = {"X-CSRF-Token": token, "Content-Type": "application/json"}
    bad = site.client.post("/actions/queues/default/pause", content=b"{nope", headers=headers)
    assert (bad.status_code, bad.json()["ok"]) == (400, False)
    listed = site.client.post("/actions/queues/default/pause", content=b"[]", headers=headers)
    assert listed.status_code == 400
    form = site.client.post(
        "/actions/queues/default/pause", data={"a": "b"}, headers={"X-CSRF-Token": token}
    )
    assert form.status_code == 415
    assert site.run(site.broker.paused_queues) == set()
