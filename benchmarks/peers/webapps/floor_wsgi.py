"""The floor of ``benchmarks/web.py --floor``: Flask under gunicorn whose ``POST /jobs`` enqueues
nothing and only counts the request: what the web tier itself costs and allows on this machine."""

from __future__ import annotations

from flask import Flask

from benchmarks.peers.webapps import counted

web = Flask(__name__)


@web.post("/jobs")
def create() -> tuple[dict[str, str], int]:
    counted()
    return {"id": "none"}, 202
