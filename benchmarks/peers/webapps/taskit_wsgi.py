"""taskit under Flask: ``task.enqueue_sync()`` per request (a blocking Redis connection lent to
the request's thread; no event loop); ``shutdown()`` (gunicorn's ``worker_exit``) closes the App."""

from __future__ import annotations

from flask import Flask

from benchmarks.peers.taskit_app import app as tasks
from benchmarks.peers.webapps import counted

ran_sync = tasks.get_task("ran_sync")
web = Flask(__name__)


@web.post("/jobs")
def create() -> tuple[dict[str, str], int]:
    job = ran_sync.enqueue_sync()
    counted()
    return {"id": job.id}, 202


def shutdown() -> None:
    tasks.close_sync()
