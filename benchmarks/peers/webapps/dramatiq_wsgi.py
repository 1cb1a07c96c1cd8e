"""Dramatiq under Flask: ``actor.send()`` per request."""

from __future__ import annotations

from flask import Flask

from benchmarks.peers.dramatiq_app import actors
from benchmarks.peers.webapps import counted

web = Flask(__name__)


@web.post("/jobs")
def create() -> tuple[dict[str, str], int]:
    message = actors["ran_sync"].send()
    counted()
    return {"id": message.message_id}, 202
