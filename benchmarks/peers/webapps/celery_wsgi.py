"""Celery under Flask: ``task.delay()`` per request."""

from __future__ import annotations

from flask import Flask

from benchmarks.peers.celery_app import tasks
from benchmarks.peers.webapps import counted

web = Flask(__name__)


@web.post("/jobs")
def create() -> tuple[dict[str, str], int]:
    result = tasks["ran_sync"].delay()
    counted()
    return {"id": result.id}, 202
