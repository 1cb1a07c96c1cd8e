"""Flask: enqueue from a plain (sync) view with `enqueue_sync`; a worker runs the jobs elsewhere.

    pip install 'taskit[examples,redis]' gunicorn
    export TASKIT_BROKER_URL=redis://localhost:6379/0
    flask --app examples.flask_app:web run                 # the web app, for development
    gunicorn examples.flask_app:web -w 4 -k gthread --threads 8 -c examples/gunicorn.conf.py
    taskit worker examples.flask_app:tasks                  # one or more workers

The views never need an event loop. On Redis, `enqueue_sync` sends the enqueue from the
request's own thread over the one blocking connection the process's threads share, pipelined
(enqueues issued while a batch is on the wire go out together in one write; no loop thread is
started); on a broker without a blocking path, or
when the App has event handlers (they are async), it runs on the App's loop thread instead.
`run_sync` (the status view) always runs on that loop thread, started on first use.

Under gunicorn, each web process closes its App as it stops: `examples/gunicorn.conf.py`'s
`worker_exit` hook calls `tasks.close_sync()` (the pool's connections, and the loop thread if one
was started). Build the App at import, as here: connections are made on first use, in each
web process (one forked after its parent enqueued, under `--preload`, makes its own).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, request

from taskit import App

tasks = App()  # TASKIT_BROKER_URL, else the in-process memory:// broker
web = Flask(__name__)


@tasks.task(name="reports.render", max_retries=2)
def render_report(month: str, fmt: str = "pdf") -> str:
    """A plain function: the worker runs it in a thread."""
    return f"report-{month}.{fmt}"


@web.post("/reports")
def create_report() -> tuple[dict[str, str], int]:
    body = request.get_json(force=True)
    try:
        job = render_report.enqueue_sync(body["month"], fmt=body.get("fmt", "pdf"))
    except (KeyError, TypeError) as exc:  # a bad call is refused before anything is enqueued
        abort(400, description=f"bad request: {exc}")
    return {"job_id": job.id}, 202


@web.get("/reports/<job_id>")
def report_status(job_id: str) -> dict[str, Any]:
    job = tasks.run_sync(tasks.get_job, job_id)
    if job is None:
        abort(404)
    return {
        "status": job.status.value,
        "file": job.result.value if job.result is not None else None,
    }
