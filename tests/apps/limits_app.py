"""The App the limit commands' tests load (``tests.apps.limits_app:app``): three declared limits
and a task that uses two. Each test gives it a broker of its own (``app.broker = ...``)."""

from __future__ import annotations

from taskit import App, MemoryBroker, Settings

app = App(MemoryBroker(), settings=Settings())
exports = app.limit("exports", concurrency=2)
payment = app.limit("payment-api", concurrency=50)
token = app.limit("api-token", rate=100, per=60, burst=10)


@app.task(name="export", limits=[exports.by("customer_id"), payment])
def export(customer_id: str) -> None:
    """Does nothing: the tests look at what the limits do with its jobs."""
