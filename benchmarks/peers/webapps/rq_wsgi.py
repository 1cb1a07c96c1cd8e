"""RQ under Flask: ``queue.enqueue(fn)`` per request."""

from __future__ import annotations

import os

from flask import Flask
from redis import Redis
from rq import Queue

from benchmarks.peers import rq_app
from benchmarks.peers.webapps import counted

queue = Queue("default", connection=Redis.from_url(os.environ["BENCH_REDIS_URL"]))
web = Flask(__name__)


@web.post("/jobs")
def create() -> tuple[dict[str, str], int]:
    job = queue.enqueue(rq_app.ran_sync)
    counted()
    return {"id": job.id}, 202
