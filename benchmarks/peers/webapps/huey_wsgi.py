"""Huey under Flask: calling the task enqueues it, per request."""

from __future__ import annotations

from flask import Flask

from benchmarks.peers.huey_app import tasks
from benchmarks.peers.webapps import counted

web = Flask(__name__)


@web.post("/jobs")
def create() -> tuple[dict[str, str], int]:
    result = tasks["ran_sync"]()
    counted()
    return {"id": result.id}, 202
